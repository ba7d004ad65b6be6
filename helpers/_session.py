"""Machinery behind ``helpers.env.make_room``: how much memory this session may use, and the
Jupyter server's sessions (which notebook holds which kernel).

Private: the standard library only (no psutil, no requests), so that it works wherever the
kernel runs; Linux-only readings return ``None`` elsewhere.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

#: cgroup files say "no limit" with a number near 2**63; anything at or above the machine's
#: memory is no limit either.
_NO_LIMIT = 2**60


@dataclass(frozen=True)
class Memory:
    """The memory this session (container) may use and uses now, in bytes."""

    limit: int
    used: int
    source: str  # "MEM_LIMIT", "cgroup v1", "cgroup v2"

    @property
    def free(self) -> int:
        return max(self.limit - self.used, 0)


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return _NO_LIMIT
    try:
        return int(text)
    except ValueError:
        return None


def _stat(path: Path) -> dict[str, int]:
    values = {}
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if value.strip().isdigit():
                values[key] = int(value)
    except OSError:
        pass
    return values


def _cgroup_dirs() -> list[tuple[str, Path]]:
    """This process's memory cgroup folders: ("v1" or "v2", folder), most specific first."""
    found = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return found
    root = Path("/sys/fs/cgroup")
    for line in lines:
        _, controllers, path = line.split(":", 2)
        relative = path.lstrip("/")
        if "memory" in controllers.split(","):
            for base in (root / "memory" / relative, root / "memory"):
                if (base / "memory.limit_in_bytes").exists():
                    found.append(("v1", base))
                    break
        elif controllers == "":
            for base in (root / relative, root):
                if (base / "memory.max").exists() or (base / "memory.current").exists():
                    found.append(("v2", base))
                    break
    return found


def _machine_memory() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return _NO_LIMIT


def _resident(status: str) -> int | None:
    """``VmRSS`` of a ``/proc/<pid>/status`` text, in bytes (None for a process without one)."""
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    return int(found.group(1)) * 1024 if found else None


def _rss_of_user() -> int:
    """Resident memory of every process of this user (a container's processes, on Binder)."""
    total, uid = 0, os.getuid()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        uid_line = re.search(r"^Uid:\s+(\d+)", text, re.M)
        if uid_line and int(uid_line.group(1)) == uid:
            total += _resident(text) or 0
    return total


_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_bytes(text: str) -> int | None:
    """A size as JupyterHub and Kubernetes write it: bytes (``"2147483648"``, ``"2147483648.0"``)
    or with a unit (``"2G"``, ``"2Gi"``, ``"512M"``, ``"1.5g"``); None for anything else."""
    found = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([kmgtKMGT]?)(i?[bB]?)\s*", text, re.ASCII)
    if not found:
        return None
    return int(float(found.group(1)) * _UNITS[found.group(2).lower()])


def memory() -> Memory | None:
    """The tightest memory limit on this session and what it uses, or None when there is none.

    Reads the memory cgroup (v1 or v2: the limit a container runs under) and ``MEM_LIMIT``
    (bytes; what JupyterHub's KubeSpawner, and so mybinder.org, set). Use is the cgroup's
    charge less its inactive file cache (what the kernel can drop at no cost), or the resident
    memory of this user's processes when only ``MEM_LIMIT`` is known. A limit at or above the
    machine's memory is no limit.
    """
    if not Path("/proc/meminfo").exists():
        return None
    machine = _machine_memory()
    candidates: list[Memory] = []
    for version, folder in _cgroup_dirs():
        if version == "v1":
            stat = _stat(folder / "memory.stat")
            limit = min(_read_int(folder / "memory.limit_in_bytes") or _NO_LIMIT,
                        stat.get("hierarchical_memory_limit", _NO_LIMIT))
            used = _read_int(folder / "memory.usage_in_bytes")
            inactive = stat.get("total_inactive_file", stat.get("inactive_file", 0))
        else:
            stat = _stat(folder / "memory.stat")
            limit = _read_int(folder / "memory.max") or _NO_LIMIT
            used = _read_int(folder / "memory.current")
            inactive = stat.get("inactive_file", 0)
        if used is not None and limit < min(_NO_LIMIT, machine):
            candidates.append(Memory(limit, max(used - inactive, 0), f"cgroup {version}"))
    mem_limit = parse_bytes(os.environ.get("MEM_LIMIT", ""))
    if mem_limit is not None and 0 < mem_limit < machine:
        used = candidates[0].used if candidates else _rss_of_user()
        candidates.append(Memory(mem_limit, used, "MEM_LIMIT"))
    return min(candidates, key=lambda m: m.limit) if candidates else None


# -- the Jupyter server -------------------------------------------------------------------------


class ServerUnreachable(RuntimeError):
    """No Jupyter server of this kernel could be asked for its sessions."""


def own_kernel_id() -> str | None:
    """This kernel's id (from its connection file's name), or None outside a Jupyter kernel."""
    try:
        from ipykernel import get_connection_file

        name = Path(get_connection_file()).name
    except Exception:  # not in a kernel, or an ipykernel without it
        return None
    found = re.fullmatch(r"kernel-(.+)\.json", name)
    return found.group(1) if found else None


def _ancestors() -> list[int]:
    pids, pid = [], os.getpid()
    for _ in range(16):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        if pid <= 1:
            break
        pids.append(pid)
    return pids


def _servers() -> list[dict]:
    """The running servers' records (jpserver-*.json), this kernel's own server first."""
    try:
        from jupyter_core.paths import jupyter_runtime_dir

        folder = Path(jupyter_runtime_dir())
    except Exception:
        return []
    records = []
    for path in folder.glob("jpserver-*.json"):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    ancestors = _ancestors()
    records.sort(key=lambda r: r.get("pid") not in ancestors)
    return [r for r in records if r.get("url")]


def _request(server: dict, method: str, path: str) -> object:
    url = server["url"].rstrip("/") + "/" + path.lstrip("/")
    request = urllib.request.Request(url, method=method)
    token = server.get("token") or os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if token:
        request.add_header("Authorization", f"token {token}")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (localhost only)
        body = response.read()
    return json.loads(body) if body else None


@dataclass(frozen=True)
class Session:
    """A notebook open in the server, with its kernel."""

    session_id: str
    path: str
    kernel_id: str
    state: str  # "idle", "busy", "starting", ...
    last_activity: str


class Server:
    """This kernel's Jupyter server, asked over its REST API (``/api/sessions``)."""

    def __init__(self) -> None:
        errors = []
        for record in _servers():
            try:
                _request(record, "GET", "api/sessions")
            except (OSError, ValueError, urllib.error.URLError) as error:
                errors.append(f"{record.get('url')}: {error}")
                continue
            self.record = record
            return
        raise ServerUnreachable("; ".join(errors) or "no running Jupyter server was found")

    def sessions(self) -> list[Session]:
        found = []
        for item in _request(self.record, "GET", "api/sessions") or []:
            kernel = item.get("kernel") or {}
            found.append(Session(item["id"], item.get("path", ""), kernel.get("id", ""),
                                 kernel.get("execution_state", ""), kernel.get("last_activity", "")))
        return found

    def shut_down(self, session: Session) -> None:
        """What JupyterLab's "Shut Down Kernel" does: the session and its kernel end."""
        _request(self.record, "DELETE", f"api/sessions/{session.session_id}")


def kernel_rss(kernel_id: str) -> int | None:
    """The resident memory of the kernel process started with this id's connection file
    (``... -f .../kernel-<id>.json``, as Jupyter starts kernels), or None if none is found."""
    needle = f"kernel-{kernel_id}.json".encode()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if needle in cmdline.read_bytes():
                return _resident((cmdline.parent / "status").read_text())
        except OSError:
            continue
    return None


def wait_until_gone(kernel_id: str, seconds: float = 15.0) -> None:
    """Wait (up to ``seconds``) until the kernel's process has exited and given its memory back."""
    deadline = time.monotonic() + seconds
    while kernel_rss(kernel_id) is not None and time.monotonic() < deadline:
        time.sleep(0.5)
