"""The verdicts and the tables: each goal with its target, the measured ratio and whether the
network itself sets the limit; the Markdown tables printed for the README."""

from __future__ import annotations

from typing import Any


#: The goals: (key, description, target, kind). "max": measured ≤ target;
#: "min": measured ≥ target.
GOALS = (
    ("cam_over_classify", "CAM of the predicted class, upsampled, / classification", 1.05, "max"),
    ("all_over_classify", "CAM of all classes (feature-size maps) / classification", 1.10,
     "max"),
    ("seed_speedup", "per image: seed post (upsample then sum) / ours", 100.0, "min"),
    ("keras_io_speedup", "per image: keras.io Grad-CAM example / ours", 15.0, "min"),
    ("tkv_speedup", "tf-keras-vis Gradcam / our CAM, same batch", 4.0, "min"),
    ("grad_cam_tkv_speedup", "tf-keras-vis Gradcam / our grad_cam, same batch", 1.2, "min"),
)
GPU_GOAL_IMAGES_PER_S = 3000.0
NO_GPU = "not measured here: no GPU in this session"


def goals_for(result: dict[str, Any], matmul_gflops: float | None = None
              ) -> list[dict[str, Any]]:
    """Each goal for one model: measured value, verdict, and the ceiling the
    network itself sets (what a CAM costing nothing beyond classification would reach);
    ``matmul_gflops``: the device's float32 matrix-product rate, for the notes."""
    m = result["measurements"]
    unmeasured = result["not_measured"]
    classify = result["classify_s"]
    classify_per_image = classify / result["batch"]
    ours_cam = m["cam_top1_upsampled"]["per_image_s"]
    ours_grad = m["grad_cam_top1_upsampled"]["per_image_s"]

    def per_image(key: str) -> float | None:
        return m[key]["per_image_s"] if key in m else None

    ours_mixed = per_image("cam_top1_upsampled_mixed_bfloat16")
    values = {
        "cam_over_classify": (m["cam_top1_upsampled"]["median_s"] / classify, None),
        "all_over_classify": (m["cam_all_classes_low_res"]["median_s"] / classify, None),
    }
    mixed: dict[str, float] = {}
    for key, peer, ours in (("seed_speedup", "seed_post_cam", ours_cam),
                            ("keras_io_speedup", "keras_io_grad_cam", ours_cam),
                            ("tkv_speedup", "tf_keras_vis_gradcam", ours_cam),
                            ("grad_cam_tkv_speedup", "tf_keras_vis_gradcam", ours_grad)):
        theirs = per_image(peer)
        values[key] = ((theirs / ours, theirs / classify_per_image) if theirs is not None
                       else (None, None))
        if theirs is not None and ours_mixed is not None and key != "grad_cam_tkv_speedup":
            mixed[key] = theirs / ours_mixed
    goals = []
    for key, description, target, kind in GOALS:
        measured, ceiling = values[key]
        if measured is None:
            peer = {"keras_io_speedup": "keras_io_grad_cam"}.get(key, "tf_keras_vis_gradcam")
            goals.append({"goal": key, "description": description, "model": result["model"],
                          "target": target, "kind": kind, "measured": None, "met": None,
                          "note": "not measured: " + unmeasured.get(peer, "unavailable")})
            continue
        met = measured <= target if kind == "max" else measured >= target
        note = ""
        if key == "all_over_classify" and not met and "cam_all_classes_weighting_only" in m:
            batch, (height, width, channels) = result["batch"], result["feature_shape"]
            gflop = 2 * batch * height * width * channels * result["num_classes"] / 1e9
            alone = m["cam_all_classes_weighting_only"]["median_s"]
            note = (f"the all-class maps are one ({batch}·{height}·{width}) × {channels} × "
                    f"{result['num_classes']} matrix product, {gflop:.1f} GFLOP, which alone "
                    f"takes {1000 * alone:.0f} ms = {alone / classify:.0%} of classifying the "
                    "batch with this light network")
            if matmul_gflops:
                floor = gflop / matmul_gflops
                note += (f"; at this device's large-matrix rate ({matmul_gflops:.0f} "
                         f"GFLOP/s) it would still take {1000 * floor:.0f} ms, "
                         f"{floor / classify:.0%} of classifying")
        if not met and ceiling is not None and ceiling < target:
            note = (f"network-bound: the peer takes {ceiling:.1f}× the time of classifying "
                    "the image, so even a CAM costing nothing beyond classification would "
                    f"be only {ceiling:.1f}× faster")
            if "classify_gflops" in result and matmul_gflops:
                note += (f"; classification itself runs at {result['classify_gflops']:.0f} "
                         "GFLOP/s and this device multiplies large float32 matrices at "
                         f"{matmul_gflops:.0f}")
        elif not met and ceiling is not None:
            note = (f"our overhead beyond classification: {ours_cam / classify_per_image:.2f}× "
                    f"(CAM), {ours_grad / classify_per_image:.2f}× (grad_cam)")
        elif not met and not note:
            note = "the maps' own work (einsum, resize) is not negligible next to this network"
        if key in mixed:
            note += ("; " if note else "") + (
                f"with dtype='mixed_bfloat16' (not the verdict): {mixed[key]:.1f}×")
        goals.append({"goal": key, "description": description, "model": result["model"],
                      "target": target, "kind": kind, "measured": measured, "met": met,
                      "ceiling": ceiling, "measured_mixed_bfloat16": mixed.get(key),
                      "note": note})
    return goals


LABELS = {
    "classify": "classify (preprocess + compiled forward, BN folded)",
    "classify_predict_on_batch": "classify (preprocess + predict_on_batch)",
    "cam_top1_upsampled": "**ours**: CAM top-1, upsampled in the call",
    "cam_top1_lazy_maps": "ours: CAM top-1, then `.maps`",
    "cam_all_classes_low_res": "**ours**: CAM of all classes (feature-size maps)",
    "cam_all_classes_weighting_only": "ours: of which the all-class weighting alone",
    "grad_cam_top1_upsampled": "**ours**: `grad_cam` top-1, upsampled",
    "grad_cam_plus_plus_top1_upsampled": "ours: `grad_cam_plus_plus` top-1, upsampled",
    "score_cam_top1_batch1": "ours: `score_cam` top-1 (a forward pass per channel), 1 image/call",
    "cam_top1_upsampled_mixed_bfloat16": "ours: CAM top-1, upsampled, mixed_bfloat16",
    "tf_keras_vis_gradcam": "tf-keras-vis `Gradcam` (same batch)",
    "seed_post_cam": "seed post (zoom every map, then sum), 1 image/call",
    "keras_io_grad_cam": "keras.io `make_gradcam_heatmap`, 1 image/call",
    "cam_top1_upsampled_batch1": "ours: CAM top-1, upsampled, 1 image/call",
}


def markdown_tables(report: dict[str, Any]) -> str:
    rates = report["machine"].get("matmul_float32_gflops") or {}
    lines = ["float32 matrix product on this device (compiled, its fastest call): " + ", ".join(
        f"{n} × {n}: {rate:.0f} GFLOP/s" for n, rate in rates.items())] if rates else []
    for result in report["models"]:
        m = result["measurements"]
        classify = result["classify_s"]
        lines += [f"\n**{result['model']}** ({result['weights']} weights, "
                  f"{result['input_size'][0]}×{result['input_size'][1]}, feature map "
                  f"{'×'.join(map(str, result['feature_shape']))} at `{result['feature_layer']}`)"
                  f", batch of {result['batch']}, median of {report['settings']['repeats']}; "
                  f"{result['multiply_adds_per_image'] / 1e9:.3g} billion multiply-adds per "
                  f"image (kernels), classified at {result['classify_gflops']:.0f} GFLOP/s\n",
                  "| method | images/call | median s/call | ms/image | × classification |",
                  "|---|---:|---:|---:|---:|"]
        for key, label in LABELS.items():
            if key not in m:
                if key in result["not_measured"]:
                    lines.append(f"| {label} | | not measured: {result['not_measured'][key]} | | |")
                continue
            row = m[key]
            ratio = row["per_image_s"] / (classify / result["batch"])
            lines.append(f"| {label} | {row['images_per_call']} | {row['median_s']:.3f} | "
                         f"{1000 * row['per_image_s']:.1f} | {ratio:.2f} |")
    lines += ["\n| goal | model | target | measured | verdict |", "|---|---|---:|---:|---|"]
    for goal in report["goals"]:
        sign = "≤" if goal["kind"] == "max" else "≥"
        measured = "—" if goal["measured"] is None else f"{goal['measured']:.2f}×"
        verdict = ("" if goal["met"] is None else "met" if goal["met"] else "**not met**")
        note = goal.get("note") or ""
        note = note if goal["met"] is None else f" ({note})" if note else ""
        lines.append(f"| {goal['description']} | {goal['model']} | {sign} {goal['target']:g}× | "
                     f"{measured} | {verdict}{note} |")
    gpu = report["gpu_throughput"]
    if gpu.get("measured"):
        best = gpu.get("best", {})
        lines.append(f"| ResNet-50 CAM throughput on {report['machine']['device']['kind']} | "
                     f"resnet50 | ≥ {GPU_GOAL_IMAGES_PER_S:.0f} images/s | "
                     f"{best.get('end_to_end_images_per_s', 0):.0f} images/s "
                     f"({best.get('dtype')}, batch {best.get('batch')}) | "
                     f"{'met' if gpu.get('met') else '**not met**'} |")
    else:
        lines.append(f"| ResNet-50 CAM throughput on a GPU (JAX) | resnet50 | "
                     f"≥ {GPU_GOAL_IMAGES_PER_S:.0f} images/s | — | {gpu['reason']} |")
    return "\n".join(lines)

