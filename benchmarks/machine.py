"""The machine a benchmark runs on: what it is (CPU, memory, device, versions), whether it is
quiet (the load average, and a wait for it to fall), and how fast its arithmetic is (a compiled
matrix product), so that a result can say whether the network or the machine set its limit.
Imports Keras only where it has to (time_notebooks.py uses the rest without it)."""

from __future__ import annotations

import json
import os
import platform
import re
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import timed  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def load_average() -> list[float]:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return [float(v) for v in os.getloadavg()]


def wait_for_quiet(limit_s: float, threshold: float, poll_s: float = 30.0) -> dict[str, Any]:
    """Poll the 1-minute load average until it is below ``threshold`` (at most ``limit_s``)."""
    start = time.monotonic()
    seen = [load_average()]
    while seen[-1][0] >= threshold and time.monotonic() - start < limit_s:
        print(f"waiting for a quiet machine: load {seen[-1]} (want < {threshold})", flush=True)
        time.sleep(min(poll_s, max(1.0, limit_s - (time.monotonic() - start))))
        seen.append(load_average())
    return {"threshold": threshold, "limit_s": limit_s, "waited_s": time.monotonic() - start,
            "quiet": seen[-1][0] < threshold, "polls": seen}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def version_of(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def device_info() -> dict[str, Any]:
    """Which device the Keras backend computes on."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        kind = cpu_model() if device.platform == "cpu" else device.device_kind
        return {"platform": device.platform, "kind": kind,
                "count": len(jax.devices()), "is_gpu": device.platform == "gpu"}
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return {"platform": "gpu", "kind": details.get("device_name", gpus[0].name),
                    "count": len(gpus), "is_gpu": True}
        return {"platform": "cpu", "kind": cpu_model(), "count": 1, "is_gpu": False}
    return {"platform": "unknown", "kind": backend, "count": 1, "is_gpu": False}


def machine_basics() -> dict[str, Any]:
    """The machine, without importing Keras (time_notebooks.py records this too)."""
    return {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": memory_gib(),
        "python": platform.python_version(),
    }


def machine_info() -> dict[str, Any]:
    import keras

    return {
        **machine_basics(),
        "keras_backend": keras.backend.backend(),
        "device": device_info(),
        "versions": {name: version_of(name) for name in (
            "keras", "tensorflow", "jax", "jaxlib", "numpy", "scipy", "tf-keras-vis")},
    }


def python_path() -> str:
    """The interpreter, relative to the repository when it lives there (.venv/bin/python)."""
    try:
        return str(Path(sys.executable).relative_to(ROOT))
    except ValueError:
        return sys.executable


def _summed_product(a: Any, b: Any) -> Any:
    import keras

    return keras.ops.sum(keras.ops.matmul(a, b))  # a scalar back: no n × n copy to the host


def matmul_rates(sizes: list[int], repeats: int) -> dict[str, float]:
    """GFLOP/s of a compiled float32 ``n × n`` matrix product on the backend's device, best of
    ``repeats``: the rate a network bound by arithmetic can approach on this machine."""
    import keras
    import numpy as np

    from helpers import _engine

    rates = {}
    for n in sizes:
        rng = np.random.default_rng(n)
        a, b = (keras.ops.convert_to_tensor(rng.standard_normal((n, n), dtype=np.float32))
                for _ in range(2))
        product = _engine.compile_function(_summed_product, [], [((n, n), "float32")] * 2)
        keras.ops.convert_to_numpy(product(a, b))  # compile
        best = min(timed(lambda: keras.ops.convert_to_numpy(product(a, b)))
                   for _ in range(repeats))
        rates[str(n)] = 2 * n**3 / best / 1e9
    return rates



def process_memory(pid: int | str | None = "self") -> dict[str, float] | None:
    """A process's peak resident set (``VmHWM``) and current one (``VmRSS``) in MiB, from
    ``/proc/<pid>/status`` (``"self"``: this process); None where that cannot be read (not
    Linux, process gone)."""
    if pid is None:
        return None
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values = dict(re.findall(r"^(VmHWM|VmRSS):\s+(\d+)\s+kB", status, re.M))
    if len(values) < 2:
        return None
    return {"peak_mib": int(values["VmHWM"]) / 1024, "rss_mib": int(values["VmRSS"]) / 1024}


def write_report(report: dict[str, Any], output: Path | None, name: str, smoke: bool) -> Path:
    """Write ``report`` as JSON to ``output``, by default ``benchmarks/results/<name>.json``
    (``<name>_smoke.json`` for a smoke run), and say where."""
    output = output or ROOT / f"benchmarks/results/{name}{'_smoke' if smoke else ''}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, default=float))
    print(f"written: {output}")
    return output
