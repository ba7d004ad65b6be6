"""The one checker of plain arguments (counts, sizes, seeds, fractions, switches, named choices,
lists of names, the kind of object a function takes).

Every public function checks its integer, number, True/False and named-choice arguments here,
so a bad value gets the same kind of message everywhere: the argument's name, what is accepted,
what was given.
The error, :class:`ArgumentError`, is both a ``TypeError`` and a ``ValueError``: a learner's
``except ValueError`` catches a wrong type as well as a value out of range.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = ["ArgumentError", "MAX_ARRAY_BYTES", "array_bytes", "choice", "flag", "indices", "instance",
           "integer", "mapping", "maps", "names", "number", "real_array", "size", "subset_indices"]

#: The most memory one array made from arguments may take (a synthetic data set): 1 GiB, half
#: of a Binder session.
MAX_ARRAY_BYTES = 1 << 30


class ArgumentError(TypeError, ValueError):
    """An argument of the wrong type or out of range; the message says what is accepted."""


def _given(value: Any) -> str:
    text = repr(value)
    text = text if len(text) <= 80 else text[:77] + "..."
    return f"{type(value).__name__} {text}"


def _bounds(low: Any, high: Any, low_open: bool = False, high_open: bool = False,
            integers: bool = False) -> str:
    if low is not None and high is not None:
        if integers:
            return f" in {low}..{high}"
        return f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high:g}"
    return ""


def integer(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an ``int`` if it is an integer (not a bool) in ``low..high`` (inclusive;
    None: unbounded), else :class:`ArgumentError`."""
    is_int = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not is_int or (low is not None and value < low) or (high is not None and value > high):
        bounds = _bounds(low, high, integers=True)
        raise ArgumentError(f"{name} must be an integer{bounds}, got {_given(value)}")
    return int(value)


def number(name: str, value: Any, low: float | None = None, high: float | None = None, *,
           low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a ``float`` if it is a finite real number (not a bool) between ``low`` and
    ``high`` (``*_open``: the bound itself excluded), else :class:`ArgumentError`."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        bounds = _bounds(low, high, low_open, high_open)
        raise ArgumentError(f"{name} must be a finite number{bounds}, got {_given(value)}")
    return float(value)


def flag(name: str, value: Any) -> bool:
    """``value`` if it is True or False (a numpy bool too), else :class:`ArgumentError`."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ArgumentError(f"{name} must be True or False, got {_given(value)}")


def choice(name: str, value: Any, options: Any) -> str:
    """``value`` if it is one of the strings ``options`` (any iterable of str, e.g. a dict's
    keys), else :class:`ArgumentError` listing them."""
    options = list(options)
    if isinstance(value, str) and value in options:
        return value
    accepted = ", ".join(map(repr, options))
    raise ArgumentError(f"{name} must be one of {accepted}, got {_given(value)}")


def size(name: str, value: Any, high: int | None = None) -> tuple[int, int]:
    """``value`` as ``(int, int)`` if it is two positive integers (each at most ``high``),
    e.g. ``(H, W)``, else :class:`ArgumentError`."""
    try:
        pair = tuple(value) if not isinstance(value, (str, bytes)) else None
    except TypeError:
        pair = None
    bound = "" if high is None else f" of at most {high}"
    message = f"{name} must be two positive integers{bound} (height, width), got {_given(value)}"
    if pair is None or len(pair) != 2:
        raise ArgumentError(message)
    try:
        return integer(f"{name}[0]", pair[0], 1, high), integer(f"{name}[1]", pair[1], 1, high)
    except ArgumentError:
        raise ArgumentError(message) from None


def names(name: str, value: Any, count: int | None = None) -> list[str]:
    """``value`` as a list of ``count`` strings (any sequence of str; not one str, which would be
    read letter by letter), else :class:`ArgumentError`."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(
            isinstance(item, str) for item in value):
        raise ArgumentError(f"{name} must be a list of strings, one per image, got {_given(value)}")
    if count is not None and len(value) != count:
        raise ArgumentError(f"{name} must name each of the {count} images, got {len(value)} names")
    return list(value)


def _refuse_unordered(name: str, value: Any) -> None:
    """A set (or a dict's keys) has no order of its own: it changes with ``PYTHONHASHSEED``,
    i.e. between kernel restarts, so anything done in its order would not repeat."""
    if isinstance(value, (set, frozenset, type({}.keys()), type({}.values()))):
        raise ArgumentError(f"{name} must be a list, in the order meant; got a "
                            f"{type(value).__name__}, whose order changes from one Python "
                            f"process to the next: pass sorted({name}) or a list")


def real_array(name: str, value: Any, what: str = "an array") -> np.ndarray:
    """``value`` as a numpy array of real numbers (bool, int or float), else
    :class:`ArgumentError` saying ``what`` is accepted: strings, complex numbers, objects and
    ragged lists are refused here, before any other numpy call reads them."""
    if isinstance(value, (str, bytes, dict)):
        array = None
    else:
        try:
            array = np.asarray(value)
        except (TypeError, ValueError):  # ragged lists, objects numpy cannot read
            array = None
    if array is None or array.dtype.kind not in "biuf":
        kind = type(value).__name__ if array is None else f"dtype {array.dtype}"
        ragged = " (ragged or mixed elements?)" if array is None and isinstance(
            value, (list, tuple)) else ""
        raise ArgumentError(f"{name} must be real numbers ({what}), got {kind}{ragged}")
    return array


def maps(name: str, value: Any, ndim: int | None = None, *, float32: bool = False) -> np.ndarray:
    """``value`` as float maps ``(..., H, W)`` (exactly ``ndim`` dimensions when given; float32
    kept, anything else float64): real numbers (:func:`real_array`), not empty, finite;
    ``float32=True`` (the maps will be computed on in float32) also refuses finite values beyond
    float32's range, which would become infinite. Else :class:`ArgumentError`."""
    shape = "(N, H, W)" if ndim == 3 else "(H, W)" if ndim == 2 else "(..., H, W)"
    kind = {2: "a 2-D map", 3: "a batch of maps"}.get(ndim, "maps")
    array = real_array(name, value, f"an array {shape}")
    if array.dtype not in (np.float32, np.float64):  # float32 kept: no float64 copy of a batch
        array = array.astype(np.float64)
    if (array.ndim != ndim) if ndim is not None else array.ndim < 2:
        raise ArgumentError(f"{name} must be {kind} {shape}, got shape {array.shape}")
    if array.size == 0:
        raise ArgumentError(f"{name} is empty: shape {array.shape} (a map needs H, W >= 1)")
    if not np.all(np.isfinite(array)):
        raise ArgumentError(f"{name} contain NaN or infinite values; pass finite maps")
    largest = float(np.abs(array).max()) if float32 else 0.0
    if largest > float(np.finfo(np.float32).max):
        raise ArgumentError(f"{name} hold values up to {largest:.3g}, beyond float32's range "
                            f"(±{np.finfo(np.float32).max:.3g}), where they would be infinite; "
                            f"scale them first (e.g. {name} / abs({name}).max())")
    return array


def instance(name: str, value: Any, types: type | tuple[type, ...], expected: str) -> Any:
    """``value`` if it is one of ``types``, else :class:`ArgumentError` saying ``expected``
    (what to pass, e.g. "a CAMResult from helpers.class_activation_maps")."""
    if isinstance(value, types):
        return value
    raise ArgumentError(f"{name} must be {expected}, got {type(value).__name__}")


def array_bytes(what: str, shape: tuple[int, ...], itemsize: int,
                limit: int = MAX_ARRAY_BYTES) -> None:
    """Refuse, with :class:`ArgumentError`, to allocate ``shape`` × ``itemsize`` bytes above
    ``limit``: the arguments that set ``shape`` are what was wrong."""
    need = math.prod(int(n) for n in shape) * itemsize
    if need > limit:
        raise ArgumentError(
            f"{what} of shape {tuple(int(n) for n in shape)} would take {need / 2**30:,.1f} GiB, "
            f"above the limit of {limit / 2**30:g} GiB; ask for fewer or smaller images")


def mapping(name: str, value: Any, types: type | tuple[type, ...], expected: str) -> dict[str, Any]:
    """``value`` as a dict if it is a non-empty mapping of names to ``types`` (``expected`` says
    what each value should be), else :class:`ArgumentError`."""
    if not hasattr(value, "items") or not callable(value.items):
        raise ArgumentError(f"{name} must be a dict of {{name: {expected}}}, got {_given(value)}")
    found = dict(value.items())
    if not found:
        raise ArgumentError(f"nothing to draw: {name} is empty")
    for key, item in found.items():
        if not isinstance(item, types):
            raise ArgumentError(f"{name}[{key!r}] must be {expected}, got {type(item).__name__}")
    return found


def indices(name: str, value: Any, count: int) -> list[int]:
    """``value`` as a list of integers in ``0..count - 1`` (a non-empty list or tuple; one int,
    a float or a string is refused), else :class:`ArgumentError`."""
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = value.tolist()
    if not isinstance(value, (list, tuple, range)) or not len(value):
        raise ArgumentError(f"{name} must be a non-empty list of image indices in 0..{count - 1}, "
                            f"got {_given(value)}")
    return [integer(f"{name}[{i}]", item, 0, count - 1) for i, item in enumerate(value)]


def labels(name: str, value: Any, count: int, num_classes: int) -> np.ndarray:
    """``value`` as ``count`` integer class ids in ``0..num_classes - 1`` (an array or a list of
    ints; booleans, floats and other lengths are refused), else :class:`ArgumentError`."""
    array = np.asarray(value) if isinstance(value, (np.ndarray, list, tuple, range)) else None
    if array is None or array.shape != (count,) or array.dtype.kind not in "iu":
        raise ArgumentError(f"{name} must be {count} integer class ids (one per image), got "
                            f"{_given(value)}")
    if count and (array.min() < 0 or array.max() >= num_classes):
        raise ArgumentError(f"{name} must lie in 0..{num_classes - 1}, got "
                            f"{array.min()}..{array.max()}")
    return array.astype(np.int64)


def subset_indices(indices: Any, count: int) -> Any:
    """What a data set's ``subset`` takes, checked for ``count`` items: a slice (as it is), one
    int (as a list of one: a set of one keeps its batch axis), a boolean mask of ``count``, or
    integer indices in ``-count..count - 1`` (numpy's); else :class:`ArgumentError`."""
    if isinstance(indices, slice):
        return indices
    accepted = f"indices must be in 0..{count - 1} (or a boolean mask of {count}, or a slice)"
    if isinstance(indices, (int, np.integer)) and not isinstance(indices, (bool, np.bool_)):
        indices = [int(indices)]
    array = real_array("indices", indices, accepted)
    if array.shape == (0,):
        return array.astype(np.int64)  # an empty set
    if array.dtype == bool:
        if array.shape != (count,):
            raise ArgumentError(f"{accepted}; got a boolean mask of shape {array.shape}")
        return array
    if array.dtype.kind not in "iu" or array.ndim != 1:
        raise ArgumentError(f"{accepted}; got {_given(indices)}")
    if array.size and (array.min() < -count or array.max() >= count):
        raise ArgumentError(f"{accepted}; got {array.min()}..{array.max()}")
    return array
