"""How a benchmark times: one warm-up call (compilation), then repeated calls, medians reported;
methods on a batch are interleaved (each round runs every method once) so that a change of load
on a shared machine hits all of them alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def timed(function: Callable[[], Any]) -> float:
    """Seconds for one call; every function here returns numpy, so the work is done."""
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def summary(times: list[float], first: float | None = None, images: int = 1) -> dict[str, Any]:
    median = statistics.median(times)
    return {"median_s": median, "per_image_s": median / images, "images_per_call": images,
            "times_s": times, "first_call_s": first, "repeats": len(times)}


def measure_interleaved(methods: dict[str, Callable[[], Any]], repeats: int,
                        images: int) -> dict[str, dict[str, Any]]:
    """Warm every method up once, then ``repeats`` rounds that run each method once."""
    first = {name: timed(function) for name, function in methods.items()}
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, function in methods.items():
            times[name].append(timed(function))
    return {name: summary(times[name], first[name], images) for name in methods}


def measure_per_call(function: Callable[[int], Any], calls: int) -> dict[str, Any]:
    """One image per call: warm up with image 0, then ``calls`` calls on images 0, 1, ..."""
    first = timed(lambda: function(0))
    return summary([timed(lambda i=i: function(i)) for i in range(calls)], first, 1)

