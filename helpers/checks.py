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
           "integer", "mapping", "names", "number", "size"]

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
