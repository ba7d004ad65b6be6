"""A whole Binder session in a real memory limit: the six notebooks one after another in one
Jupyter server, each kernel left running as JupyterLab leaves it.

mybinder.org gives the whole container (the server and every kernel) 2 GB and sets MEM_LIMIT;
JupyterLab keeps every notebook's kernel running after the learner moves on. This test makes
a memory cgroup (cgroup v1 or v2; it needs root) with that limit, starts JupyterLab's server in
it with Binder's environment variables, opens each notebook's session through the server's REST
API (as JupyterLab does) and runs its cells in order through the kernel, then leaves that kernel
running and goes on to the next notebook.

It fails on any error in a cell, on any OOM kill (the cgroup's own counter), and on any kernel
that is gone without a notebook's setup cell having said that it shut it down
(``helpers.env.make_room``). What it measured (time per notebook, memory after each, the
cgroup's peak, which kernels were shut down) goes to ``GAPCAM_BINDER_RESULTS``
(default ``benchmarks/results/binder_session.json``).

Settings: ``GAPCAM_BINDER_MEMORY_MIB`` (default 2048), ``GAPCAM_BINDER_CPUS`` (CPU numbers, e.g.
``0`` for one CPU as Binder gives; default: all).
"""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from helpers._session import kernel_rss

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MEMORY_MIB = int(os.environ.get("GAPCAM_BINDER_MEMORY_MIB", "2048"))
CPUS = os.environ.get("GAPCAM_BINDER_CPUS", "")
RESULTS = Path(os.environ.get("GAPCAM_BINDER_RESULTS", ROOT / "benchmarks/results/binder_session.json"))
CELL_TIMEOUT_S = 900
#: What mybinder.org's KubeSpawner and BinderHub put in the container's environment.
BINDER_ENV = {
    "MEM_LIMIT": str(MEMORY_MIB * 2**20),
    "CPU_LIMIT": "1.0",
    "BINDER_LAUNCH_HOST": "https://mybinder.org/",
    "BINDER_REPO_URL": "https://github.com/gap-cam/gap-cam-notebooks",
    "BINDER_REF_URL": "https://github.com/gap-cam/gap-cam-notebooks/tree/main",
    "BINDER_REQUEST": "v2/gh/gap-cam/gap-cam-notebooks/main",
    "BINDER_PERSISTENT_REQUEST": "v2/gh/gap-cam/gap-cam-notebooks/main",
    "JUPYTER_IMAGE_SPEC": "gap-cam-notebooks:test",
}


class Cgroup:
    """A memory cgroup of its own (v1 where the memory controller is mounted so, else v2)."""

    def __init__(self, limit: int) -> None:
        name = f"gapcam-binder-{os.getpid()}"
        v1 = Path("/sys/fs/cgroup/memory")
        if (v1 / "memory.limit_in_bytes").exists():
            self.version, self.path = 1, v1 / name
            self.path.mkdir()
            (self.path / "memory.limit_in_bytes").write_text(str(limit))
            swap = self.path / "memory.memsw.limit_in_bytes"
            if swap.exists():  # no swapping around the limit either (Binder has no swap)
                swap.write_text(str(limit))
        elif Path("/sys/fs/cgroup/cgroup.controllers").exists():
            self.version, self.path = 2, Path("/sys/fs/cgroup") / name
            self.path.mkdir()
            (self.path / "memory.max").write_text(str(limit))
            if (self.path / "memory.swap.max").exists():
                (self.path / "memory.swap.max").write_text("0")
        else:
            raise RuntimeError("no memory cgroup controller under /sys/fs/cgroup")

    def add_self(self) -> None:  # run in the child before exec
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def oom_kills(self) -> int:
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        for line in (self.path / name).read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        raise RuntimeError(f"{self.path / name} has no oom_kill counter (Linux 4.13 or newer is needed)")

    def usage(self) -> int:
        name = "memory.usage_in_bytes" if self.version == 1 else "memory.current"
        return int((self.path / name).read_text())

    def peak(self) -> int | None:
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        try:
            return int((self.path / name).read_text())
        except (OSError, ValueError):
            return None

    def reset_peak(self) -> None:
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        try:
            (self.path / name).write_text("0")
        except OSError:
            pass

    def pids(self) -> list[int]:
        return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]

    def remove(self) -> None:
        for _ in range(60):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            time.sleep(0.5)
        try:
            self.path.rmdir()
        except OSError:
            pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, folder: Path, cgroup: Cgroup) -> None:
        self.port, self.token = free_port(), uuid.uuid4().hex
        self.url = f"http://127.0.0.1:{self.port}"
        self.runtime = folder / "runtime"
        env = {key: value for key, value in os.environ.items()
               if key not in ("MPLBACKEND", "KERAS_BACKEND") and not key.startswith("GAPCAM_BINDER")}
        env.update(BINDER_ENV, GAPCAM_OFFLINE="1", JUPYTER_RUNTIME_DIR=str(self.runtime),
                   JUPYTER_CONFIG_DIR=str(folder / "config"),
                   JUPYTERLAB_SETTINGS_DIR=str(folder / "lab-settings"),
                   JUPYTERLAB_WORKSPACES_DIR=str(folder / "lab-workspaces"))
        command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
                   f"--port={self.port}", f"--IdentityProvider.token={self.token}",
                   f"--ServerApp.root_dir={ROOT}", "--ServerApp.open_browser=False",
                   "--LabApp.news_url=None",
                   "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        if os.getuid() == 0:
            command.append("--allow-root")
        cpus = {int(c) for c in CPUS.replace(" ", "").split(",") if c}

        def enter_limits() -> None:
            cgroup.add_self()
            if cpus:
                os.sched_setaffinity(0, cpus)

        self.log_path = folder / "jupyterlab.log"
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self.log,
                                        stderr=subprocess.STDOUT, preexec_fn=enter_limits)
        deadline = time.monotonic() + 180
        while True:
            try:
                self.request("GET", "api/status")
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail("JupyterLab did not start:\n" + self.log_path.read_text())
                time.sleep(0.5)

    def request(self, method: str, path: str, body: dict | None = None) -> object:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}/{path}", data=data, method=method)
        request.add_header("Authorization", f"token {self.token}")
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = response.read()
        return json.loads(payload) if payload else None

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def run_notebook(server: Server, notebook: Path) -> dict:
    """Open the notebook's session as JupyterLab does and run its code cells in order."""
    from jupyter_client import BlockingKernelClient

    path = notebook.relative_to(ROOT).as_posix()
    session = server.request("POST", "api/sessions", {
        "path": path, "name": notebook.name, "type": "notebook", "kernel": {"name": "python3"}})
    kernel_id = session["kernel"]["id"]
    client = BlockingKernelClient(connection_file=str(server.runtime / f"kernel-{kernel_id}.json"))
    client.load_connection_file()
    client.start_channels()
    record = {"notebook": notebook.name, "kernel_id": kernel_id, "errors": [], "said": []}
    printed: list[str] = []
    started = time.monotonic()
    try:
        client.wait_for_ready(timeout=120)
        cells = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
        for index, cell in enumerate(cells):
            texts: list[str] = []

            def keep(message: dict, texts: list[str] = texts) -> None:
                content = message["content"]
                if message["msg_type"] == "stream":
                    texts.append(content["text"])
                elif message["msg_type"] == "error":
                    texts.append(f"{content['ename']}: {content['evalue']}")

            try:
                reply = client.execute_interactive("".join(cell["source"]), timeout=CELL_TIMEOUT_S,
                                                   allow_stdin=False, output_hook=keep)
            except TimeoutError:
                record["errors"].append(f"code cell {index}: no reply in {CELL_TIMEOUT_S} s "
                                        f"(the kernel died or hung)")
                break
            text = "".join(texts)
            printed.append(text)
            if "Memory:" in text:
                record["said"].append(text[text.index("Memory:"):])
            if reply["content"]["status"] != "ok":
                record["errors"].append(f"code cell {index}: {reply['content'].get('ename')}: "
                                        f"{reply['content'].get('evalue')}")
                break
    finally:
        client.stop_channels()  # the kernel itself keeps running, as JupyterLab leaves it
    record["seconds"] = round(time.monotonic() - started, 1)
    if record["errors"]:  # what the notebook printed before it stopped, to tell why
        record["printed_tail"] = "".join(printed)[-4000:]
    return record


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    if os.getuid() != 0:
        pytest.fail("make test-binder needs root: it makes a memory cgroup with Binder's limit")
    limit = MEMORY_MIB * 2**20
    # A cold page cache, as in a fresh container: the libraries' pages (TensorFlow's alone are
    # hundreds of MB) are then charged to the session's cgroup when its processes first read
    # them, not left charged to whoever read them before. (Pages that another running process
    # maps stay; make test-binder runs alone in CI.)
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3")
    cgroup = Cgroup(limit)
    folder = tmp_path_factory.mktemp("binder")
    server = Server(folder, cgroup)
    records = []
    try:
        for notebook in NOTEBOOKS:
            cgroup.reset_peak()
            record = run_notebook(server, notebook)
            record["peak_mib"] = round((cgroup.peak() or 0) / 2**20)
            record["cgroup_mib_after"] = round(cgroup.usage() / 2**20)
            alive = {s["kernel"]["id"] for s in server.request("GET", "api/sessions")}
            record["kernels_mib_after"] = {
                r["notebook"]: (round((kernel_rss(r["kernel_id"]) or 0) / 2**20)
                                if r["kernel_id"] in alive else None)
                for r in [*records, record]}
            records.append(record)
            print(f"{notebook.name}: {record['seconds']} s, cgroup peak {record['peak_mib']} MiB, "
                  f"{record['cgroup_mib_after']} MiB after; kernels (MiB): {record['kernels_mib_after']}",
                  flush=True)
            for said in record["said"]:
                print("  " + said.strip().replace("\n", "\n  "), flush=True)
        sessions = server.request("GET", "api/sessions")
        result = {
            "memory_limit_mib": MEMORY_MIB,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "cpus": CPUS or f"all ({os.cpu_count()})",
            "cgroup": f"v{cgroup.version}",
            "oom_kills": cgroup.oom_kills(),
            "alive_at_end": sorted(Path(s["path"]).name for s in sessions),
            "total_seconds": round(sum(r["seconds"] for r in records), 1),
            "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d"),
            "notebooks": records,
        }
    finally:
        server.stop()
        cgroup.remove()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    return result


def test_every_notebook_runs_to_the_end(session):
    errors = {r["notebook"]: r["errors"] for r in session["notebooks"] if r["errors"]}
    assert not errors, errors


def test_no_kernel_is_killed_for_memory(session):
    assert session["oom_kills"] == 0, (
        f"the OOM killer fired {session['oom_kills']} times in a {MEMORY_MIB} MiB session: "
        + json.dumps(session["notebooks"], indent=1))


def test_every_kernel_is_alive_or_was_shut_down_with_a_word(session):
    said = "\n".join(text for r in session["notebooks"] for text in r["said"])
    shut_down = set(re.findall(r"^\s*- (\S+\.ipynb)$", said, re.M))  # make_room's list
    silent = [r["notebook"] for r in session["notebooks"]
              if r["notebook"] not in session["alive_at_end"] and r["notebook"] not in shut_down]
    assert not silent, f"kernels gone without a word: {silent}; alive: {session['alive_at_end']}"
    assert session["notebooks"][-1]["notebook"] in session["alive_at_end"]
