"""The notebooks' setup cell: version checks, backend and device report, seeds.

Introduced in notebook 01.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from importlib import metadata

__all__ = ["SERIES_KERNEL_MIB", "make_room", "on_colab", "require_versions", "report_environment", "set_seed"]


def on_colab() -> bool:
    """Whether the code runs on Google Colab."""
    return "google.colab" in sys.modules or os.path.exists("/content/sample_data")


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
        if not piece.isdigit():
            break
    return tuple(parts)


def require_versions(**minimums: str) -> dict[str, str]:
    """Assert that installed distributions are at least the given versions.

    Parameters
    ----------
    **minimums
        Distribution name (``-`` written as ``_``) → minimum version, e.g. ``keras="3.6"``.

    Returns
    -------
    dict[str, str]
        The installed versions.

    Raises
    ------
    RuntimeError
        Naming every package that is missing or too old, and how to fix it.
    ValueError
        A minimum that is not a version string of dot-separated numbers (``"3.6"``, not ``3.6``,
        ``""`` or ``"latest"``).
    """
    for name, minimum in minimums.items():
        if not (isinstance(minimum, str) and re.fullmatch(r"\d+(\.\d+)*", minimum.strip())):
            raise ValueError(f"require_versions({name}=...) takes a version string of numbers "
                             f"and dots such as \"3.6\", got {type(minimum).__name__} {minimum!r}")
    installed, problems = {}, []
    for name, minimum in minimums.items():
        distribution = name.replace("_", "-")
        try:
            version = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            problems.append(f"{distribution} is not installed (need >= {minimum})")
            continue
        installed[distribution] = version
        if _version_tuple(version) < _version_tuple(minimum):
            problems.append(f"{distribution} {version} is older than {minimum}")
    if problems:
        raise RuntimeError(
            "; ".join(problems) + ". Run `make lab` (or `pip install -r requirements.txt`)."
        )
    return installed


def report_environment() -> dict[str, object]:
    """Print and return Python, Keras, backend and device information.

    Says so (does not fail) when no GPU is found: every notebook of the series runs on a CPU.
    """
    import keras

    from helpers._engine.devices import accelerators

    devices = accelerators()
    info: dict[str, object] = {
        "python": platform.python_version(),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "devices": devices or ["CPU"],
        "colab": on_colab(),
    }
    print(
        f"Python {info['python']} | Keras {info['keras']} on {info['backend']} | "
        f"devices: {', '.join(info['devices'])}" + (" | Colab" if info["colab"] else "")
    )
    if not devices:
        print("No GPU found: running on the CPU (every notebook here is sized for that).")
    return info


#: NumPy's legacy global seed (which Keras sets) must lie in 0 .. 2**32 - 1.
MAX_SEED = 2**32 - 1


def set_seed(seed: int = 42) -> None:
    """Seed Python, NumPy and the Keras backend so runs are repeatable.

    Parameters
    ----------
    seed
        An int in ``0 .. 2**32 - 1`` (NumPy's range).

    Raises
    ------
    helpers.checks.ArgumentError
        ``seed`` is not an int (``None`` would mean "unseeded", the opposite of repeatable), or
        is negative or above ``2**32 - 1``.
    """
    from helpers.checks import integer

    seed = integer("seed", seed, 0, MAX_SEED)
    import keras

    from helpers._quiet import import_tensorflow_quietly

    import_tensorflow_quietly()  # Keras seeds TensorFlow too, wherever it is installed
    keras.utils.set_random_seed(int(seed))


#: The most memory one notebook's kernel of this series takes at its peak, in MiB: every
#: notebook peaks under it (docs/workshop_timings.json, measured by
#: benchmarks/time_notebooks.py; tests/test_make_room.py checks the two agree).
SERIES_KERNEL_MIB = 1536
#: What the Jupyter server (JupyterLab and its extensions) holds beside the kernels, in MiB.
SERVER_MIB = 256


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.1f} GiB"


def make_room(needed_mib: int = SERIES_KERNEL_MIB) -> list[str]:
    """On a host with a memory limit (Binder), make room for this notebook's kernel.

    Binder gives the whole session, the Jupyter server and every kernel in it, 2 GB, and
    JupyterLab keeps a notebook's kernel running after you move on: one idle kernel of this
    series leaves too little for the next, and the system then kills one without a word. So
    when the limit cannot hold this notebook at its peak (``needed_mib``), the server and every
    other kernel as they are now (their resident memory), this shuts down the series' other
    *idle* kernels (the notebooks beside this one, longest idle first) until it can, and says
    which. Their files are untouched; their variables are gone until they are run again. A busy
    kernel, or a notebook outside this series, is never touched: it is only named.

    Does nothing, silently, where there is no memory limit (a laptop, CI) or on Colab (one
    notebook per runtime).

    Parameters
    ----------
    needed_mib
        How much this notebook's kernel takes at its peak, in MiB (the series' notebooks all
        stay under ``SERIES_KERNEL_MIB``).

    Returns
    -------
    list[str]
        The notebooks whose kernels were shut down.
    """
    from helpers._session import Server, ServerUnreachable, kernel_rss, memory, own_kernel_id, wait_until_gone
    from helpers.checks import integer

    needed_mib = integer("needed_mib", needed_mib, 1, 2**30)
    current = memory()
    if current is None or on_colab():
        return []
    needs = f"this notebook's kernel needs up to {needed_mib / 1024:.1f} GiB"
    head = f"Memory: this session may use {_gib(current.limit)} ({current.source}); {needs}"
    advice = ("If this notebook's kernel dies, shut down the kernels of notebooks you are done "
              "with (JupyterLab: the Running panel in the left bar), then run it again.")
    try:
        server = Server()
        sessions = server.sessions()
    except ServerUnreachable as error:
        if current.free >= needed_mib * 2**20:
            print(f"{head}: {_gib(current.used)} is in use, room enough.")
        else:
            print(f"{head}, {_gib(current.used)} is in use, and the Jupyter server could not be "
                  f"asked which kernels are open ({error}). {advice}")
        return []
    own = own_kernel_id()
    mine = next((s for s in sessions if s.kernel_id == own and s.path.endswith(".ipynb")),
                next((s for s in sessions if s.kernel_id == own), None))
    folder = os.path.dirname(mine.path) if mine else None
    others = [s for s in sessions if s.kernel_id != own]  # a console on this kernel is this kernel
    held = {s.kernel_id: kernel_rss(s.kernel_id) or 0 for s in others}  # a kernel counted once
    budget = current.limit - SERVER_MIB * 2**20 - needed_mib * 2**20

    def in_series(s) -> bool:
        return (re.fullmatch(r"\d\d_.+\.ipynb", os.path.basename(s.path)) is not None
                and (folder is None or os.path.dirname(s.path) == folder))

    stopped: list[str] = []
    for session in sorted((s for s in others if in_series(s) and s.state == "idle"),
                          key=lambda s: s.last_activity):
        if sum(held.values()) <= budget:
            break
        if session.kernel_id not in held:  # its kernel, shared with another session, is gone
            continue
        server.shut_down(session)
        wait_until_gone(session.kernel_id)
        stopped.append(session.path)
        del held[session.kernel_id]
    still_open = [s for s in others if s.path not in stopped]
    if not stopped and sum(held.values()) <= budget:
        open_now = (f"{len(others)} other kernel(s) hold {_gib(sum(held.values()))}" if others
                    else "no other kernel is open")
        print(f"{head}; {open_now}: room enough.")
    if stopped:
        names = "".join(f"\n  - {os.path.basename(path)}" for path in stopped)
        print(f"{head}. JupyterLab keeps every notebook's kernel running, so these idle kernels "
              f"of the series were shut down to make room:{names}\nTheir files are untouched, "
              f"but their variables are gone: to use one again, open it and run it from the top "
              f"(Run > Run All Cells).")
    if budget < 0:
        print(f"{head}, more than this session's limit leaves beside the server "
              f"({SERVER_MIB} MiB): its kernel may be stopped for memory whatever else is open. "
              f"mybinder.org's usual 2 GB is enough for every notebook of the series.")
    elif sum(held.values()) > budget:
        names = ", ".join(f"{os.path.basename(s.path) or s.kernel_id} ({_gib(held[s.kernel_id])})"
                          for s in still_open if s.kernel_id in held)
        print(f"{head if not stopped else 'Memory'}: other kernels still hold more than the "
              f"limit leaves for them: {names} (busy, or not of this series). {advice}")
    return stopped
