"""The legacy torch reader: real file, refused pickles, truncation."""

from __future__ import annotations

import collections
import io
import os
import pickle

import numpy as np
import pytest

from helpers.models.lite0 import _lite0_source_file
from helpers.models.torch_weights import (
    LEGACY_MAGIC_NUMBER,
    LEGACY_PROTOCOL_VERSION,
    WeightsFileError,
    read_legacy_state_dict,
)


@pytest.fixture(scope="module")
def lite0_bytes() -> bytes:
    return _lite0_source_file().read_bytes()


def test_reads_packaged_efficientnet_lite0(lite0_bytes):
    state = read_legacy_state_dict(lite0_bytes)
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_fc.weight"].dtype == np.float32
    assert state["_bn0.num_batches_tracked"].dtype == np.int64
    learned = sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked"))
    assert learned == 4_694_024
    # Real trained weights: finite, not constant, running variances positive.
    assert all(np.all(np.isfinite(v)) for v in state.values())
    assert state["_fc.weight"].std() > 0.01
    assert np.all(state["_bn1.running_var"] > 0)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /tmp/gapcam-pwned",))


def _legacy_file(main_object: object, keys: list[str] | None = None) -> bytes:
    buffer = io.BytesIO()
    for header in (LEGACY_MAGIC_NUMBER, LEGACY_PROTOCOL_VERSION, {"little_endian": True}):
        pickle.dump(header, buffer, protocol=2)
    pickle.dump(main_object, buffer, protocol=2)
    pickle.dump(keys or [], buffer, protocol=2)
    return buffer.getvalue()


def test_refuses_malicious_pickle(tmp_path):
    marker = tmp_path / "never"
    payload = _legacy_file(collections.OrderedDict(weight=_Evil()))
    with pytest.raises(WeightsFileError, match=r"refused to load global 'posix\.system'|'os\.system'"):
        read_legacy_state_dict(payload)
    assert not marker.exists()


@pytest.mark.parametrize("module,name", [("builtins", "eval"), ("subprocess", "Popen"), ("torch", "load")])
def test_refuses_any_global_outside_whitelist(module, name):
    body = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"."
    headers = io.BytesIO()
    for header in (LEGACY_MAGIC_NUMBER, LEGACY_PROTOCOL_VERSION, {}):
        pickle.dump(header, headers, protocol=2)
    with pytest.raises(WeightsFileError, match=f"refused to load global '{module}.{name}'"):
        read_legacy_state_dict(headers.getvalue() + body)


def test_rejects_non_torch_file():
    with pytest.raises(WeightsFileError, match="magic number"):
        read_legacy_state_dict(pickle.dumps(123, protocol=2))
    with pytest.raises(WeightsFileError):
        read_legacy_state_dict(b"PK\x03\x04 zip-format torch files are not supported")


def test_truncated_file_is_an_error_not_garbage(lite0_bytes):
    with pytest.raises(WeightsFileError, match="truncated"):
        read_legacy_state_dict(lite0_bytes[: len(lite0_bytes) - 1000])


# Hand-made legacy files: every bad one is a WeightsFileError, read quickly and without allocating
# more than the file holds. -------------------------------------------------------------------------


def _ops(value) -> bytes:
    """The opcodes that push ``value`` (a str, an int or a tuple of ints), without PROTO and STOP."""
    return pickle.dumps(value, protocol=2)[2:-1]


def _global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def _tensor(key, numel, offset, size, stride, storage="FloatStorage") -> bytes:
    persistent_id = (b"(" + _ops("storage") + _global("torch", storage) + _ops(key) + _ops("cpu")
                     + _ops(numel) + b"tQ")
    return (_global("torch._utils", "_rebuild_tensor_v2") + b"(" + persistent_id + _ops(offset)
            + _ops(tuple(size)) + _ops(tuple(stride)) + b"\x89"
            + _global("collections", "OrderedDict") + b")RtR")


def _handmade(tensors: dict[str, bytes], storages: list[tuple[str, int, bytes]]) -> bytes:
    """A legacy file: ``tensors`` name -> opcodes, then ``storages`` (key, element count, bytes)."""
    buffer = io.BytesIO()
    for header in (LEGACY_MAGIC_NUMBER, LEGACY_PROTOCOL_VERSION, {"little_endian": True}):
        pickle.dump(header, buffer, protocol=2)
    buffer.write(b"\x80\x02" + _global("collections", "OrderedDict") + b")R("
                 + b"".join(_ops(name) + body for name, body in tensors.items()) + b"u.")
    pickle.dump([key for key, _, _ in storages], buffer, protocol=2)
    for _, numel, raw in storages:
        buffer.write(np.array([numel], "<i8").tobytes() + raw)
    return buffer.getvalue()


def test_a_handmade_file_reads_and_tied_views_share_one_array():
    values = np.arange(6, dtype="<f4")
    data = _handmade(
        {"w": _tensor("0", 6, 0, (2, 3), (3, 1)), "t": _tensor("1", 6, 0, (3, 2), (1, 3)),
         "tied": _tensor("0", 6, 0, (2, 3), (3, 1))},
        [("0", 6, values.tobytes()), ("1", 6, values.tobytes())],
    )
    state = read_legacy_state_dict(data)
    np.testing.assert_array_equal(state["w"], values.reshape(2, 3))
    np.testing.assert_array_equal(state["t"], values.reshape(2, 3).T)
    assert state["tied"] is state["w"]  # the same view: one array, as in torch


def test_a_stride_zero_view_cannot_expand_a_tiny_file():
    # Before: a file of a few hundred bytes gave an array of any size (1 GB, or MemoryError at 4 TB).
    for size in [(1000, 1000), (2**20, 2**20)]:
        data = _handmade({"w": _tensor("0", 1, 0, size, (0, 0))}, [("0", 1, b"\0" * 4)])
        assert len(data) < 400
        with pytest.raises(WeightsFileError, match=r"has \d+ elements but its storage only 1"):
            read_legacy_state_dict(data)


def test_many_views_of_one_storage_cannot_multiply_it():
    # Each view fits, but 200 different views of one storage would be 200 copies of it.
    tensors = {f"w{i}": _tensor("0", 1000, i, (1000 - i,), (1,)) for i in range(200)}
    data = _handmade(tensors, [("0", 1000, b"\0" * 4000)])
    with pytest.raises(WeightsFileError, match=r"more than the 1000 their storages hold"):
        read_legacy_state_dict(data)


def test_a_huge_storage_declaration_is_refused_before_reading():
    data = _handmade({"w": _tensor("0", 2**40, 0, (2**40,), (1,))}, [("0", 2**40, b"\0" * 16)])
    with pytest.raises(WeightsFileError, match=r"truncated .*announces 4398046511104 bytes"):
        read_legacy_state_dict(data)


def test_a_negative_element_count_is_refused():
    # Before: read(-4) swallowed the rest of the file.
    data = _handmade({"w": _tensor("0", -1, 0, (0,), (1,))}, [("0", -1, b"\0" * 64)])
    with pytest.raises(WeightsFileError, match=r"must not be negative, the file has -1"):
        read_legacy_state_dict(data)


def test_deeply_nested_lists_are_a_weights_file_error_not_a_recursion_error():
    # Before: 200k nested lists as a persistent id raised RecursionError from the message's repr.
    depth = 200_000
    nested = b"]" * depth + b"a" * (depth - 1)
    buffer = io.BytesIO()
    for header in (LEGACY_MAGIC_NUMBER, LEGACY_PROTOCOL_VERSION, {}):
        pickle.dump(header, buffer, protocol=2)
    for body in (b"\x80\x02" + nested + b"Q.", b"\x80\x02" + _ops("storage") + nested + b"\x86Q."):
        with pytest.raises(WeightsFileError, match=r"persistent id .* a (list|tuple) of"):
            read_legacy_state_dict(buffer.getvalue() + body)


@pytest.mark.parametrize(
    "tensor, message",
    [
        (_tensor("0", 4, 0, (2.5,), (1,)), r"size must be an int, the file has a float 2.5"),
        (_tensor("0", 4, -1, (2,), (1,)), r"storage offset must not be negative"),
        (_tensor("0", 4, 0, (2, 2), (1,)), r"invalid view"),
        (_tensor("0", 4, 3, (2,), (1,)), r"reaches outside its storage"),
        (_tensor("0", 4, 0, tuple([1] * 40), tuple([1] * 40)), r"at most 32 ints"),
    ],
)
def test_malformed_views_are_refused(tensor, message):
    with pytest.raises(WeightsFileError, match=message):
        read_legacy_state_dict(_handmade({"w": tensor}, [("0", 4, b"\0" * 16)]))


def test_a_zip_format_file_is_named_as_such():
    with pytest.raises(WeightsFileError, match=r"zip-format torch file .*_use_new_zipfile_serialization=False"):
        read_legacy_state_dict(b"PK\x03\x04" + b"\0" * 100)


def test_an_int_is_not_taken_as_a_file_descriptor(tmp_path):
    # Before: read_legacy_state_dict(3) read descriptor 3 and closed it behind the caller's back.
    descriptor = os.open(tmp_path / "x", os.O_CREAT | os.O_RDWR)
    try:
        with pytest.raises(TypeError, match=r"source must be a path .* or the file's bytes, got int"):
            read_legacy_state_dict(descriptor)
        os.fstat(descriptor)  # still open
    finally:
        os.close(descriptor)
