"""``keras.applications`` classifiers (ResNet-50, VGG-16), whose ImageNet weights are downloaded.

Introduced in notebook 01. Where a network exists (Binder, Colab) Keras downloads the weights;
offline, :func:`load_keras_application` fails within seconds with :class:`OfflineError`, whose
message names the offline model, instead of waiting on a download.
"""

from __future__ import annotations

import hashlib
import os
import socket
import tempfile
import threading
from pathlib import Path

import keras

__all__ = ["KERAS_APPLICATIONS", "OfflineError", "load_keras_application"]

#: Where keras.applications downloads ImageNet weights from (used by the offline probe).
KERAS_WEIGHTS_HOST = ("storage.googleapis.com", 443)
NETWORK_PROBE_TIMEOUT_S = 5.0


class OfflineError(RuntimeError):
    """Pretrained weights need a download and no network is reachable."""



def _network_reachable(host: tuple[str, int] = KERAS_WEIGHTS_HOST,
                       timeout: float = NETWORK_PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``host`` opens within ``timeout`` seconds (DNS included)."""
    result: list[bool] = []

    def attempt() -> None:
        try:
            with socket.create_connection(host, timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _keras_weights_file(file_name: str, md5: str) -> tuple[Path | None, list[Path]]:
    """A complete download of ``file_name`` where Keras keeps it, and the incomplete ones seen.

    Looks in ``$KERAS_HOME/models``, ``~/.keras/models`` and Keras's fallback ``<tmp>/.keras/models``;
    a file counts only if its MD5 is the one Keras checks (a partial download does not).
    """
    homes = [os.environ.get("KERAS_HOME"), Path.home() / ".keras", Path(tempfile.gettempdir()) / ".keras"]
    incomplete = []
    for home in dict.fromkeys(Path(h).expanduser() for h in homes if h):
        candidate = home / "models" / file_name
        try:
            if not candidate.is_file():
                continue
            digest = hashlib.md5(usedforsecurity=False)
            with open(candidate, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
        except OSError:
            incomplete.append(candidate)
            continue
        if digest.hexdigest() == md5:
            return candidate, incomplete
        incomplete.append(candidate)
    return None, incomplete


#: name -> (builder, weights file name, its MD5 as keras.applications checks it, preprocessing)
KERAS_APPLICATIONS = {
    "resnet50": (
        lambda **kw: keras.applications.ResNet50(**kw),
        "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
        "2cb95161c43110f7111970584f804107",
        lambda x: keras.applications.resnet50.preprocess_input(x),
    ),
    "vgg16": (
        lambda **kw: keras.applications.VGG16(**kw),
        "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
        "64373286793e3c8b2b4e3219cbf3544b",
        lambda x: keras.applications.vgg16.preprocess_input(x),
    ),
}


def load_keras_application(name: str, weights: str | None) -> keras.Model:
    """The ``keras.applications`` model ``name`` with logits out; a verified earlier download
    is used as it is, and no download is tried without a network."""
    build, file_name, md5, _ = KERAS_APPLICATIONS[name]
    if weights != "imagenet":
        return build(weights=weights, classifier_activation=None)
    complete, incomplete = _keras_weights_file(file_name, md5)
    if complete is not None:  # load the verified file itself: Keras never re-downloads it
        return build(weights=str(complete), classifier_activation=None)
    if os.environ.get("GAPCAM_OFFLINE") == "1" or not _network_reachable():
        found = ""
        if incomplete:
            found = (
                f" The file found at {incomplete[0]} is incomplete or corrupt (its MD5 is not "
                f"{md5}); delete it, or replace it with a complete copy."
            )
        raise OfflineError(
            f"{name} ImageNet weights must be downloaded from {KERAS_WEIGHTS_HOST[0]}, which "
            "is not reachable (no network, or GAPCAM_OFFLINE=1)." + found + " Use "
            "load_classifier('efficientnet_lite0') for pretrained weights that work offline, or "
            f"weights=None for {name}'s architecture."
        )
    return build(weights=weights, classifier_activation=None)
