"""The cache of converted weights: one directory, files trusted only by their SHA-256.

Introduced in notebook 01 (with :func:`helpers.prepare_offline_model`). Files are written through
a temporary file and an atomic rename, readable by every user, each beside a JSON manifest with its
size and SHA-256; a file that does not match its manifest is never trusted.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

__all__ = ["CACHE_FORMAT_VERSION", "UnwritableCache", "cache_dir", "cache_is_valid",
           "fallback_cache_dir", "manifest_path", "remove_stale_temporaries", "say_once", "sha256",
           "unwritable_reason", "write_atomically"]

#: Bump when the conversion changes, so caches written by older code are rebuilt.
CACHE_FORMAT_VERSION = 1
#: Cache files are readable by every user (mkstemp alone would make them 0600).
CACHE_FILE_MODE = 0o644
#: A ``.tmp-*`` file in the cache older than this (seconds) is an interrupted conversion's leftover.
STALE_TEMPORARY_S = 3600


def cache_dir() -> Path:
    """Directory for converted weights: ``$GAPCAM_CACHE_DIR``, else ``$XDG_CACHE_HOME/gap-cam``,
    else ``~/.cache/gap-cam``."""
    override = os.environ.get("GAPCAM_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gap-cam"



def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()



def manifest_path(weights_path: Path) -> Path:
    return weights_path.with_name(weights_path.name + ".json")


def fallback_cache_dir() -> Path:
    """Per-user directory used when :func:`cache_dir` cannot be written: ``<tmp>/gap-cam-<uid>``."""
    user = os.getuid() if hasattr(os, "getuid") else getpass.getuser()
    return Path(tempfile.gettempdir()) / f"gap-cam-{user}"


class UnwritableCache(OSError):
    """Neither the cache directory nor the per-user fallback can be written."""


def say_once(message: str) -> None:
    """Warn with ``message`` the first time it comes up in this process."""
    if message not in _ANNOUNCED:
        _ANNOUNCED.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


_ANNOUNCED: set[str] = set()


def cache_is_valid(weights_path: Path) -> bool:
    """Whether the weights file matches its manifest (unreadable or malformed: not valid)."""
    manifest_file = manifest_path(weights_path)
    try:
        if not (weights_path.is_file() and manifest_file.is_file()):
            return False
        manifest = json.loads(manifest_file.read_text())
        if not isinstance(manifest, dict):
            return False
        return (
            manifest.get("format_version") == CACHE_FORMAT_VERSION
            and manifest.get("size") == weights_path.stat().st_size
            and manifest.get("sha256") == sha256(weights_path)
        )
    except (OSError, ValueError):  # unreadable (another user's 0600 file), not JSON, not UTF-8
        return False


def unwritable_reason(directory: Path) -> str | None:
    """Why files cannot be created in ``directory`` (created if missing), or None if they can."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=directory, prefix=".tmp-probe-")
        os.close(handle)
        os.remove(probe)
    except OSError as error:
        return f"{type(error).__name__}: {error.strerror or error}"
    return None


def remove_stale_temporaries(directory: Path) -> None:
    """Delete ``.tmp-*`` files an interrupted conversion left, once they are clearly abandoned."""
    try:
        entries = list(directory.glob(".tmp-*"))
    except OSError:
        return
    now = time.time()
    for entry in entries:
        try:
            if entry.is_file() and now - entry.stat().st_mtime > STALE_TEMPORARY_S:
                entry.unlink()
        except OSError:
            pass  # another process removed it, or we may not: harmless


def write_atomically(target: Path, write: Callable[[str], None]) -> None:
    """Write ``target`` through a temporary file in its directory, readable by all, then rename."""
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.name)
    os.close(handle)
    try:
        write(temporary)
        os.chmod(temporary, CACHE_FILE_MODE)  # mkstemp makes 0600: others could not read the cache
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
