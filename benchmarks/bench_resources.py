"""What the audit's resource cases cost now: memory over repeated loads, the explorer after a
large upload, and a small file that declares a huge image.

    .venv/bin/python benchmarks/bench_resources.py            # about a minute
    .venv/bin/python benchmarks/bench_resources.py --smoke    # seconds: the code paths only

* **Repeated loads**: ``rounds`` times ``load_classifier("efficientnet_lite0")``, CAM and
  Grad-CAM of one photo, then the classifier dropped (``del`` and ``gc.collect()``): the resident
  set after each round. A cache that kept what it built for dropped models grows by the model's
  size each round; one that lets go stays flat after the first round.
* **Explorer after an upload**: the median time of a slider move (``rank_slider``) on the
  sample photos, then after ``add_photo`` of a ``4000 × 3000`` photo.
* **A declared huge image**: ``load_image`` of a 16-bit PNG header declaring ``8000 × 8000``
  pixels (a few hundred bytes): the time to refuse it and the resident set it adds.

Writes ``benchmarks/results/bench_resources.json`` (machine, load averages, every time). These
are measurements, not tests: ``tests/test_benchmarks.py`` runs ``--smoke`` and checks the report.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import statistics
import struct
import sys
import time
import zlib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its siblings, however it is run
from machine import load_average, machine_basics, process_memory, python_path, write_report  # noqa: E402


def resident_mib() -> float | None:
    """This process's resident set in MiB (None where /proc cannot be read)."""
    memory = process_memory()
    return None if memory is None else memory["rss_mib"]


def repeated_loads(rounds: int) -> dict[str, Any]:
    import helpers

    photo = helpers.sample_images()["coffee"]
    after = []
    for _ in range(rounds):
        classifier = helpers.load_classifier("efficientnet_lite0")
        helpers.class_activation_maps(classifier, photo)
        helpers.grad_cam(classifier, photo)
        del classifier
        gc.collect()
        after.append(resident_mib())
    known = None not in after and len(after) >= 2
    half = len(after) // 2
    return {"rounds": rounds, "resident_mib_after_each": after,
            "growth_after_first_round_mib": after[-1] - after[0] if known else None,
            # allocator and backend caches settle in the first rounds; a leak keeps growing
            "growth_over_second_half_mib": after[-1] - after[half - 1] if known else None}


def explorer_after_upload(moves: int, side: int) -> dict[str, Any]:
    import numpy as np
    from PIL import Image

    import helpers

    samples = helpers.sample_images()
    classifier = helpers.load_classifier("efficientnet_lite0")
    explorer = helpers.cam_explorer(classifier, [samples["chelsea"], samples["astronaut"]],
                                    top_k=4)

    def move_times() -> list[float]:
        times = []
        for move in range(moves):
            start = time.perf_counter()
            explorer.rank_slider.value = 1 + (move + 1) % 4
            times.append(time.perf_counter() - start)
        return times

    explorer.rank_slider.value = 2  # the first move after building, not timed
    before = move_times()
    width, height = side, side * 3 // 4
    phone = np.asarray(Image.fromarray(samples["chelsea"]).resize((width, height)))
    explorer.add_photo(phone, name="phone.jpg")
    explorer.rank_slider.value = 2
    after = move_times()
    return {"moves": moves, "upload": [width, height],
            "sample_move_median_s": statistics.median(before),
            "after_upload_move_median_s": statistics.median(after),
            "sample_move_s": before, "after_upload_move_s": after}


def declared_huge_image(side: int) -> dict[str, Any]:
    from helpers import load_image

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", side, side, 16, 0, 0, 0, 0)  # 16-bit grayscale
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
           + chunk(b"IDAT", zlib.compress(b"\x00" * (2 * side + 1) * 8)) + chunk(b"IEND", b""))
    before = resident_mib()
    start = time.perf_counter()
    try:
        load_image(png)
        outcome = "read"
    except ValueError as error:
        outcome = f"refused: {error}"
    seconds = time.perf_counter() - start
    after = resident_mib()
    return {"declared": [side, side], "file_bytes": len(png), "outcome": outcome,
            "seconds": seconds,
            "resident_added_mib": None if None in (before, after) else after - before}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="2 rounds, 3 moves: code paths only")
    parser.add_argument("--rounds", type=int, default=None, help="repeated loads (12)")
    parser.add_argument("--moves", type=int, default=None, help="timed slider moves (15)")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    for name, value in (("KERAS_BACKEND", "tensorflow"), ("TF_CPP_MIN_LOG_LEVEL", "3"),
                        ("GAPCAM_OFFLINE", "1"), ("MPLBACKEND", "Agg")):
        os.environ.setdefault(name, value)
    rounds = args.rounds or (2 if args.smoke else 12)
    moves = args.moves or (3 if args.smoke else 15)
    load_start, started = load_average(), time.time()
    report: dict[str, Any] = {
        "command": " ".join([python_path(), "benchmarks/bench_resources.py",
                             *(sys.argv[1:] if argv is None else argv)]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_basics(),
        "repeated_loads": repeated_loads(rounds),
        "explorer": explorer_after_upload(moves, 800 if args.smoke else 4000),
        "declared_huge_image": declared_huge_image(8000),
    }
    report["load_average"] = {"start": load_start, "end": load_average()}
    report["wall_s"] = time.time() - started
    loads, explorer = report["repeated_loads"], report["explorer"]
    print(f"repeated loads: {rounds} rounds, resident MiB after each "
          f"{[round(v) for v in loads['resident_mib_after_each'] if v is not None]}")
    print(f"explorer: slider move median {1000 * explorer['sample_move_median_s']:.0f} ms on the "
          f"samples, {1000 * explorer['after_upload_move_median_s']:.0f} ms after a "
          f"{explorer['upload'][0]} × {explorer['upload'][1]} upload")
    huge = report["declared_huge_image"]
    print(f"a {huge['file_bytes']}-byte PNG declaring 8000 × 8000: {huge['outcome'][:60]}... in "
          f"{1000 * huge['seconds']:.1f} ms, {huge['resident_added_mib']} MiB added")
    write_report(report, args.output, "bench_resources", args.smoke)
    return report


if __name__ == "__main__":
    main()
