"""The legacy torch reader: real file, refused pickles, truncation."""

from __future__ import annotations

import collections
import io
import pickle

import numpy as np
import pytest

from helpers.models import _lite0_source_file
from helpers.torch_weights import (
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
