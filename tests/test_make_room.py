"""helpers.env.make_room: on a memory-limited host (Binder), the series' idle kernels make room
for the notebook being run, and the notebook says which. The real session, in a real 2 GiB
cgroup with a real Jupyter server, is make test-binder (tests/binder/); here the memory
readings and the server are stand-ins, so that each rule is checked on its own."""

from __future__ import annotations

import os

import pytest

from helpers import _session, env

GIB = 2**30


class FakeServer:
    """Sessions as the server lists them; shutting one down ends its kernel's process."""

    def __init__(self, sessions, rss):
        self._sessions, self.rss, self.stopped = list(sessions), rss, []

    def __call__(self):  # stands in for the class: make_room calls Server()
        return self

    def sessions(self):
        return list(self._sessions)

    def shut_down(self, session):
        self.stopped.append(session.path)
        self._sessions.remove(session)
        self.rss.pop(session.kernel_id, None)


def session(path, state="idle", last="2026-12-04T10:00:00Z", kernel=None):
    return _session.Session(f"s-{path}", path, kernel or f"k-{path}", state, last)


@pytest.fixture
def host(monkeypatch):
    """A 2 GiB host, as Binder gives; this kernel is notebooks/03_cam.ipynb's."""
    monkeypatch.setattr(_session, "memory", lambda: _session.Memory(2 * GIB, GIB, "MEM_LIMIT"))
    monkeypatch.setattr(_session, "own_kernel_id", lambda: "k-mine")
    monkeypatch.setattr(_session, "wait_until_gone", lambda kernel_id: None)
    monkeypatch.setattr(env, "on_colab", lambda: False)


def install(monkeypatch, sessions, rss):
    """The server's sessions, and each kernel's resident memory (MiB) by kernel id."""
    rss = {kernel: mib * 2**20 for kernel, mib in rss.items()}
    server = FakeServer(sessions, rss)
    monkeypatch.setattr(_session, "Server", server)
    monkeypatch.setattr(_session, "kernel_rss", lambda kernel_id: rss.get(kernel_id))
    return server


MINE = session("notebooks/03_cam.ipynb", kernel="k-mine")


def test_no_limit_means_nothing_is_done_or_said(monkeypatch, capsys):
    monkeypatch.setattr(_session, "memory", lambda: None)
    monkeypatch.setattr(_session, "Server", lambda: pytest.fail("no server is asked without a limit"))
    assert env.make_room() == []
    assert capsys.readouterr().out == ""


def test_with_room_enough_it_only_says_so(host, monkeypatch, capsys):
    install(monkeypatch, [MINE], {})
    assert env.make_room(needed_mib=1000) == []
    out = capsys.readouterr().out
    assert "2.0 GiB (MEM_LIMIT)" in out and "room enough" in out


def test_on_binder_idle_kernels_of_the_series_are_shut_down_longest_idle_first(host, monkeypatch, capsys):
    sessions = [MINE, session("notebooks/02_gap.ipynb", last="2026-12-04T10:05:00Z"),
                session("notebooks/01_heads.ipynb", last="2026-12-04T10:01:00Z")]
    server = install(monkeypatch, sessions, {"k-notebooks/01_heads.ipynb": 1300,
                                             "k-notebooks/02_gap.ipynb": 1600})
    stopped = env.make_room()
    assert stopped == server.stopped == ["notebooks/01_heads.ipynb", "notebooks/02_gap.ipynb"]
    out = capsys.readouterr().out
    assert "  - 01_heads.ipynb" in out and "  - 02_gap.ipynb" in out and "Run All Cells" in out
    assert "still hold" not in out


def test_it_stops_as_soon_as_there_is_room(host, monkeypatch):
    sessions = [MINE, session("notebooks/01_heads.ipynb", last="2026-12-04T10:01:00Z"),
                session("notebooks/02_gap.ipynb", last="2026-12-04T10:05:00Z")]
    # 2048 - 256 (server) - 1000 (this notebook) = 792 MiB for the others: one of them fits.
    server = install(monkeypatch, sessions, {"k-notebooks/01_heads.ipynb": 700,
                                             "k-notebooks/02_gap.ipynb": 700})
    assert env.make_room(needed_mib=1000) == ["notebooks/01_heads.ipynb"]
    assert [s.path for s in server.sessions()] == ["notebooks/03_cam.ipynb", "notebooks/02_gap.ipynb"]


def test_busy_kernels_and_other_notebooks_are_never_touched_and_it_says_so(host, monkeypatch, capsys):
    sessions = [MINE, session("notebooks/02_gap.ipynb", state="busy"),
                session("notebooks/my_scratch.ipynb"), session("elsewhere/01_other_series.ipynb")]
    server = install(monkeypatch, sessions, {"k-notebooks/02_gap.ipynb": 900,
                                             "k-notebooks/my_scratch.ipynb": 300,
                                             "k-elsewhere/01_other_series.ipynb": 300})
    assert env.make_room() == [] and server.stopped == []
    out = capsys.readouterr().out
    for name in ("02_gap.ipynb (0.9 GiB)", "my_scratch.ipynb", "01_other_series.ipynb", "Running panel"):
        assert name in out


def test_a_limit_below_one_notebook_says_so(host, monkeypatch, capsys):
    monkeypatch.setattr(_session, "memory", lambda: _session.Memory(GIB, GIB // 2, "MEM_LIMIT"))
    server = install(monkeypatch, [MINE, session("notebooks/01_heads.ipynb")], {"k-notebooks/01_heads.ipynb": 700})
    assert env.make_room() == ["notebooks/01_heads.ipynb"] and server.stopped
    out = capsys.readouterr().out
    assert "may be stopped for memory" in out and "still hold" not in out


def test_an_unreachable_server_is_said_with_what_to_do(host, monkeypatch, capsys):
    def unreachable():
        raise _session.ServerUnreachable("no running Jupyter server was found")

    monkeypatch.setattr(_session, "Server", unreachable)
    assert env.make_room() == []
    out = capsys.readouterr().out
    assert "no running Jupyter server was found" in out and "Running panel" in out


def test_needed_mib_is_checked(host):
    with pytest.raises(ValueError, match="needed_mib"):
        env.make_room(needed_mib=0)
    with pytest.raises(TypeError, match="needed_mib"):
        env.make_room(needed_mib="1.5 GiB")


def test_mem_limit_is_read_as_binder_sets_it(monkeypatch):
    monkeypatch.setenv("MEM_LIMIT", str(2 * GIB))
    memory = _session.memory()
    assert memory is not None and memory.limit <= 2 * GIB and memory.used > 0
    monkeypatch.setenv("MEM_LIMIT", str(2**62))  # more than the machine has: no limit
    no_limit = _session.memory()
    assert no_limit is None or no_limit.limit < 2**62


def test_the_series_budget_covers_every_measured_notebook():
    """SERIES_KERNEL_MIB is what make_room reserves; the measured peaks must stay under it."""
    import json
    from pathlib import Path

    timings = json.loads((Path(__file__).resolve().parents[1] / "docs/workshop_timings.json").read_text())
    peaks = [nb["peak_mib"] for nb in timings["notebooks"]]
    assert peaks and max(peaks) <= env.SERIES_KERNEL_MIB, peaks


@pytest.mark.skipif(not os.path.exists("/proc/self/cgroup"), reason="Linux")
def test_memory_reads_this_machine_without_error():
    memory = _session.memory()
    assert memory is None or 0 <= memory.used and memory.limit > 0


def test_a_console_on_this_kernel_is_this_kernel_not_another(host, monkeypatch):
    """Fourth audit: a console opened on this notebook's kernel was counted as another kernel,
    so an idle notebook that fitted was shut down for nothing."""
    console = _session.Session("s-console", "console-1", "k-mine", "idle", "2026-12-04T09:00:00Z")
    sessions = [MINE, console, session("notebooks/01_heads.ipynb")]
    # 2048 - 256 - 1000 = 792 MiB for the others: notebook 01 (700) fits; this kernel is not counted.
    server = install(monkeypatch, sessions, {"k-mine": 1200, "k-notebooks/01_heads.ipynb": 700})
    assert env.make_room(needed_mib=1000) == [] and server.stopped == []


def test_two_sessions_on_one_kernel_are_one_kernel(host, monkeypatch, capsys):
    """Fourth audit: two sessions sharing one kernel raised a bare KeyError after shutting it
    down; the kernel is counted once and shut down once."""
    shared = "k-shared"
    sessions = [MINE, session("notebooks/01_heads.ipynb", kernel=shared, last="2026-12-04T10:01:00Z"),
                session("notebooks/02_gap.ipynb", kernel=shared, last="2026-12-04T10:02:00Z")]
    server = install(monkeypatch, sessions, {shared: 1300})
    assert env.make_room() == ["notebooks/01_heads.ipynb"] and server.stopped == ["notebooks/01_heads.ipynb"]
    assert "still hold" not in capsys.readouterr().out


@pytest.mark.parametrize("text, expected", [
    ("2147483648", 2**31), ("2147483648.0", 2**31), ("2G", 2**31), ("2Gi", 2**31),
    ("512M", 2**29), ("1.5g", 3 * 2**29), (" 2G ", 2**31),
    ("", None), ("²", None), ("two gigs", None), ("-5", None), ("2 GB RAM", None),
])
def test_mem_limit_is_read_in_the_forms_hubs_write_it(text, expected):
    """Fourth audit: "2G" was read as no limit, and "²" (a digit to str.isdigit) crashed int()."""
    assert _session.parse_bytes(text) == expected
