"""The cache of converted weights: one directory, trusted only if no other user can write it.

Introduced in notebook 01 (with :func:`helpers.prepare_offline_model`). Files are written through
a temporary file and an atomic rename, readable by every user, each beside a JSON manifest with its
size and SHA-256; a file that does not match its manifest is never trusted. A manifest proves
nothing about who wrote the pair, though: whoever can write the directory can write both. So the
directory and its files count only when they belong to this user (or root) and no one else may
write them; the per-user fallback in the shared temporary directory is created ``0700``, and one
that another user made first is refused, not used.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import stat
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

__all__ = ["CACHE_FORMAT_VERSION", "UnwritableCache", "cache_dir", "cache_is_valid",
           "fallback_cache_dir", "manifest_path", "remove_stale_temporaries", "say_once", "sha256",
           "untrusted_reason", "unwritable_reason", "write_atomically"]

#: Bump when the conversion changes, so caches written by older code are rebuilt.
CACHE_FORMAT_VERSION = 1
#: Cache files are readable by every user (mkstemp alone would make them 0600).
CACHE_FILE_MODE = 0o644
#: The fallback directory in the shared temporary directory: this user's alone.
FALLBACK_DIR_MODE = 0o700
#: A manifest is a few lines of JSON; a larger file is not one (and is not read).
MANIFEST_BYTES = 64 * 1024
#: Prefix of this package's temporary files: the clean-up removes only these (and only its user's).
TEMPORARY_PREFIX = ".tmp-gapcam-"
#: A temporary file of ours older than this (seconds) is an interrupted conversion's leftover.
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


def _current_user() -> int | None:
    return os.getuid() if hasattr(os, "getuid") else None  # None: no POSIX owners (Windows)


def untrusted_reason(path: Path) -> str | None:
    """Why ``path`` (a cache directory or file) cannot be trusted, or None if it can: it must
    belong to this user or to root (who can change any file anyway), and neither its group nor
    other users may write it. Symbolic links are judged by what they point to. No reason on a
    system without POSIX owners."""
    user = _current_user()
    if user is None:
        return None
    try:
        status = path.stat()
    except OSError as error:
        return f"{path} cannot be examined ({type(error).__name__}: {error.strerror or error})"
    if status.st_uid not in (user, 0):
        return f"{path} belongs to another user (uid {status.st_uid})"
    if status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} can be written by other users (mode {stat.S_IMODE(status.st_mode):o})"
    return None


def _open_parent_reason(directory: Path) -> str | None:
    """Why the folder holding ``directory`` lets other users replace it, or None: writable by
    group or others without the sticky bit (``/tmp``'s ``1777`` is fine)."""
    if _current_user() is None:
        return None
    try:
        mode = directory.absolute().parent.stat().st_mode
    except OSError:
        return None  # no parent to examine: the directory itself is judged
    if mode & (stat.S_IWGRP | stat.S_IWOTH) and not mode & stat.S_ISVTX:
        return (f"{directory.absolute().parent} can be written by other users without the sticky bit "
                f"(mode {stat.S_IMODE(mode):o}): anyone could replace {directory.name}")
    return None


def cache_is_valid(weights_path: Path) -> bool:
    """Whether the weights file matches its manifest, and the directory, the file and the manifest
    are trusted (:func:`untrusted_reason`); unreadable or malformed: not valid."""
    manifest_file = manifest_path(weights_path)
    try:
        if not (weights_path.is_file() and manifest_file.is_file()):
            return False
        if any(untrusted_reason(path) for path in (weights_path.parent, weights_path, manifest_file)):
            return False
        if _open_parent_reason(weights_path.parent) or manifest_file.stat().st_size > MANIFEST_BYTES:
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


def unwritable_reason(directory: Path, *, private: bool = False) -> str | None:
    """Why ``directory`` cannot hold the cache, or None if it can: it is created if missing
    (``0700`` when ``private``, else ``0755``), must be trusted (:func:`untrusted_reason`; a
    private one of ours that is looser is tightened to ``0700``), and must take new files."""
    if private and directory.is_symlink():
        return (f"{directory} is a symbolic link (to {os.readlink(directory)}); the private "
                "fallback must be a folder of this user's own")
    try:
        directory.mkdir(mode=FALLBACK_DIR_MODE if private else 0o755, parents=True, exist_ok=True)
        if private and directory.stat().st_uid == _current_user():
            directory.chmod(FALLBACK_DIR_MODE)
        untrusted = untrusted_reason(directory) or _open_parent_reason(directory)
        if untrusted:
            return untrusted
        handle, probe = tempfile.mkstemp(dir=directory, prefix=TEMPORARY_PREFIX + "probe-")
        os.close(handle)
        os.remove(probe)
    except OSError as error:
        return f"{type(error).__name__}: {error.strerror or error}"
    return None


def remove_stale_temporaries(directory: Path) -> None:
    """Delete the temporary files an interrupted conversion of this user left (named
    :data:`TEMPORARY_PREFIX`), once they are clearly abandoned; anyone else's files stay."""
    try:
        entries = list(directory.glob(TEMPORARY_PREFIX + "*"))
    except OSError:
        return
    now, user = time.time(), _current_user()
    for entry in entries:
        try:
            status = entry.lstat()
            if (stat.S_ISREG(status.st_mode) and user in (None, status.st_uid)
                    and now - status.st_mtime > STALE_TEMPORARY_S):
                entry.unlink()
        except OSError:
            pass  # another process removed it, or we may not: harmless


def write_atomically(target: Path, write: Callable[[str], None]) -> None:
    """Write ``target`` through a temporary file in its directory, readable by all, then rename."""
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=TEMPORARY_PREFIX,
                                         suffix=target.name)
    os.close(handle)
    try:
        write(temporary)
        os.chmod(temporary, CACHE_FILE_MODE)  # mkstemp makes 0600: others could not read the cache
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
