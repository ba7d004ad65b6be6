"""Time the CAM engine side by side with plain classification and with its peers.

    make bench                                              # this, then time_notebooks.py
    .venv/bin/python benchmarks/bench_cam.py --wait-for-quiet 600
    KERAS_BACKEND=jax .venv/bin/python benchmarks/bench_cam.py   # e.g. on a GPU machine
    .venv/bin/python benchmarks/bench_cam.py --smoke        # seconds; code paths only (CI)

What is timed, for each model (ResNet-50 with random weights, the offline EfficientNet-Lite0),
on one batch of 32 RGB uint8 photos at 224 × 224, preprocessing included everywhere:

* ``classify``: ``Classifier.preprocess`` + the compiled forward pass the engine uses
  (``helpers._engine.compiled_forward``: ``tf.function`` / ``jax.jit`` of the model with its
  BatchNormalization layers folded into the convolutions, ``helpers._engine.fold_batch_norm``); also
  Keras's own ``predict_on_batch`` of the unfolded model. The ratios divide by the faster of the
  two, so that folding makes classification faster too and "× classification" measures only
  what CAM adds.
* ours: CAM of the predicted class upsampled to 224 × 224 (``upsample=True``); the same with
  the lazy ``.maps``; low-resolution maps of all 1000 classes (``classes="all"``: the full-size
  maps would be 32 × 1000 × 224 × 224 floats, 6.4 GB, so "all classes" means what the class
  explorer keeps: 7 × 7 maps); Grad-CAM of the predicted class, upsampled; one image per call.
* peers, re-implemented faithfully (see each function's docstring):
  the seed post (Alexis Cook, 2017: per image, upsample every feature map with
  ``scipy.ndimage.zoom``, then the weighted sum), the keras.io Grad-CAM example
  (``make_gradcam_heatmap``, one image per call), and tf-keras-vis ``Gradcam`` (the PyPI package,
  a benchmark-only dependency: requirements-bench.txt) on the same model and batch.

Every measurement is warmed up once (compilation), then repeated; medians are reported. The
batch measurements are interleaved (one round runs every method once), so that a change of load
on a shared machine affects all of them alike. Prints Markdown tables (ready for the README)
and writes JSON (benchmarks/results/bench_cam_<backend>.json) with the machine, the device,
the load averages at start and end, every time and every goal with its verdict.

On a GPU (``KERAS_BACKEND=jax`` there) it also measures ResNet-50 CAM throughput in images/s for
several batch sizes and precisions (float32, mixed_bfloat16, mixed_float16).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its siblings, however it is run
from machine import (  # noqa: E402
    load_average, machine_info, matmul_rates, python_path, wait_for_quiet, write_report,
)
from peers import correlation, make_gradcam_heatmap, seed_post_cam, tf_keras_vis_gradcam  # noqa: E402
from report import GPU_GOAL_IMAGES_PER_S, goals_for, markdown_tables  # noqa: E402
from timing import measure_interleaved, measure_per_call  # noqa: E402
from workload import load_model, multiply_adds, photo_batch  # noqa: E402

NO_GPU = "not measured here: no GPU in this session"


def bench_model(name: str, args: argparse.Namespace) -> dict[str, Any]:
    import keras
    import numpy as np

    from helpers import _engine, cam

    classifier = load_model(name)
    images = photo_batch(args.batch, classifier.input_size)
    head = cam.find_cam_head(classifier)
    model = classifier.model
    compiled_forward = _engine.compiled_forward(model)
    backend = keras.backend.backend()
    tkv, tkv_reason = tf_keras_vis_gradcam(model)
    top1 = classifier.logits(images).argmax(axis=1)  # given to tf-keras-vis for free

    methods: dict[str, Callable[[], Any]] = {
        "classify": lambda: keras.ops.convert_to_numpy(
            compiled_forward(classifier.preprocess(images))),
        "classify_predict_on_batch": lambda: np.asarray(
            model.predict_on_batch(classifier.preprocess(images))),
        "cam_top1_upsampled": lambda: cam.class_activation_maps(
            classifier, images, upsample=True),
        "cam_top1_lazy_maps": lambda: cam.class_activation_maps(classifier, images).maps,
        "cam_all_classes_low_res": lambda: cam.class_activation_maps(
            classifier, images, classes="all"),
        "grad_cam_top1_upsampled": lambda: cam.grad_cam(classifier, images, upsample=True),
        "grad_cam_plus_plus_top1_upsampled": lambda: cam.grad_cam_plus_plus(
            classifier, images, upsample=True),
    }
    # The all-class weighting alone (stage 2: einsum at feature resolution, results to numpy),
    # on feature maps already computed and left on the device: what "all" adds to a forward pass.
    network, weighting = _engine.programs(
        cam.METHODS["cam"], classifier, _engine.Plan("all", head.num_classes, None, "float32"))
    features = network(classifier.preprocess(images))
    no_ids = np.zeros((args.batch, 0), np.int64)
    methods["cam_all_classes_weighting_only"] = lambda: _engine.to_numpy(
        weighting(features, no_ids))
    if tkv is not None:
        methods["tf_keras_vis_gradcam"] = lambda: tkv(
            classifier.preprocess(images), top1, head.feature_layer)
    if args.mixed:
        methods["cam_top1_upsampled_mixed_bfloat16"] = lambda: cam.class_activation_maps(
            classifier, images, upsample=True, dtype="mixed_bfloat16")
    print(f"[{name}] batch of {args.batch}: {len(methods)} methods × {args.repeats} rounds",
          flush=True)
    measurements = measure_interleaved(methods, args.repeats, args.batch)

    # One image per call: the peers' way, and ours for comparison.
    feature_output = model.get_layer(head.feature_layer).output
    seed_model = keras.Model(model.inputs, [feature_output, model.output])
    seed_weights = head.weights
    print(f"[{name}] one image per call: seed post × {args.seed_calls}", flush=True)
    measurements["seed_post_cam"] = measure_per_call(
        lambda i: seed_post_cam(seed_model, seed_weights, images[i % len(images)],
                                classifier.preprocess), args.seed_calls)
    unmeasured: dict[str, str] = {}
    if backend == "tensorflow":
        print(f"[{name}] one image per call: keras.io × {args.peer_calls}", flush=True)
        measurements["keras_io_grad_cam"] = measure_per_call(
            lambda i: make_gradcam_heatmap(classifier.preprocess(images[i % len(images)]),
                                           model, head.feature_layer), args.peer_calls)
    else:
        unmeasured["keras_io_grad_cam"] = ("the keras.io example is TensorFlow-only "
                                           "(tf.GradientTape)")
    if tkv is None:
        unmeasured["tf_keras_vis_gradcam"] = tkv_reason
    measurements["cam_top1_upsampled_batch1"] = measure_per_call(
        lambda i: cam.class_activation_maps(classifier, images[i % len(images)], upsample=True),
        args.peer_calls)
    # Score-CAM: one forward pass per feature channel (1,280 on Lite0, 2,048 on ResNet-50).
    print(f"[{name}] one image per call: Score-CAM × {args.score_cam_calls}", flush=True)
    measurements["score_cam_top1_batch1"] = measure_per_call(
        lambda i: cam.score_cam(classifier, images[i % len(images)]), args.score_cam_calls)

    # Do the peers compute the same thing? Correlation of the first image's map with ours,
    # brought to the peer's format (scipy zoom, ReLU); ~1.0 when the re-implementation is
    # faithful. The zoom (corner-aligned) and our resize (half-pixel) differ slightly.
    import scipy.ndimage

    ours = cam.class_activation_maps(classifier, images[:1], upsample=True)
    ours_grad = cam.grad_cam(classifier, images[:1])
    factor = classifier.input_size[0] / ours.low_res.shape[2]
    seed_map = seed_post_cam(seed_model, seed_weights, images[0], classifier.preprocess)[0]
    agreement = {
        "seed_post_vs_ours_zoomed": correlation(
            seed_map, scipy.ndimage.zoom(ours.low_res[0, 0], factor, order=1)),
        "seed_post_vs_ours_upsampled_bilinear": correlation(seed_map, ours.maps[0, 0]),
    }
    grad_relu = np.maximum(ours_grad.low_res[0, 0], 0)
    if backend == "tensorflow":
        agreement["keras_io_vs_ours_grad_cam_relu"] = correlation(
            make_gradcam_heatmap(classifier.preprocess(images[:1]), model, head.feature_layer),
            grad_relu)
    if tkv is not None:
        agreement["tf_keras_vis_vs_ours_grad_cam_relu_zoomed"] = correlation(
            tkv(classifier.preprocess(images[:1]), ours_grad.class_ids[:, 0], head.feature_layer),
            scipy.ndimage.zoom(grad_relu, factor, order=1))
    macs = multiply_adds(model)
    # Ratios divide by the faster of the two classification baselines.
    classify = min(measurements["classify"]["median_s"],
                   measurements["classify_predict_on_batch"]["median_s"])
    return {"model": name, "weights": "imagenet (offline)" if name == "efficientnet_lite0"
            else "random" if name != "tiny_cnn" else "random (smoke model)",
            "multiply_adds_per_image": macs, "classify_s": classify,
            "classify_gflops": 2 * macs * args.batch / classify / 1e9,
            "input_size": list(classifier.input_size), "feature_layer": head.feature_layer,
            "feature_shape": list(head.feature_shape), "num_classes": head.num_classes,
            "batch": args.batch,
            "measurements": measurements, "not_measured": unmeasured, "agreement": agreement}


def gpu_throughput(args: argparse.Namespace, device: dict[str, Any]) -> dict[str, Any]:
    """ResNet-50 CAM images/s per batch size and precision, where a GPU is present. Two paths:
    end to end (uint8 images on the host → upsampled maps on the host) and engine only (a
    preprocessed batch already on the device → maps left on the device)."""
    import keras
    import numpy as np

    from helpers import _engine, cam

    section: dict[str, Any] = {"goal_images_per_s": GPU_GOAL_IMAGES_PER_S,
                               "model": "resnet50", "rows": []}
    if not device["is_gpu"] and not args.gpu_code_path:
        section.update(measured=False, reason=NO_GPU)
        return section
    name = "tiny_cnn" if args.smoke else "resnet50"
    classifier = load_model(name)
    cam.find_cam_head(classifier)  # fails early on a model without a CAM head
    section.update(model=name, measured=device["is_gpu"],
                   reason=None if device["is_gpu"] else f"{NO_GPU} (code path run on the CPU)")
    for dtype in args.gpu_dtypes:
        for batch in args.gpu_batches:
            row: dict[str, Any] = {"dtype": dtype, "batch": batch}
            try:
                images = photo_batch(batch, classifier.input_size)
                end_to_end = measure_interleaved(
                    {"e2e": lambda: cam.class_activation_maps(
                        classifier, images, upsample=True, dtype=dtype)},
                    args.gpu_repeats, batch)["e2e"]
                size = tuple(classifier.input_size)
                plan = _engine.Plan("top", 1, size, dtype)
                network, weighting = _engine.programs(cam.METHODS["cam"], classifier, plan)
                on_device = keras.ops.convert_to_tensor(classifier.preprocess(images))
                no_ids = np.zeros((batch, 0), np.int64)

                def engine() -> Any:
                    outputs = weighting(network(on_device), no_ids)
                    return keras.ops.convert_to_numpy(outputs["low_res"])  # waits for the maps

                engine_only = measure_interleaved({"engine": engine}, args.gpu_repeats,
                                                  batch)["engine"]
                row.update(end_to_end_images_per_s=batch / end_to_end["median_s"],
                           engine_images_per_s=batch / engine_only["median_s"],
                           end_to_end=end_to_end, engine=engine_only)
                print(f"[gpu] {name} {dtype} batch {batch}: "
                      f"{row['end_to_end_images_per_s']:.0f} images/s end to end, "
                      f"{row['engine_images_per_s']:.0f} engine only", flush=True)
            except Exception as error:  # noqa: BLE001 - e.g. out of memory: report, go on
                row["error"] = f"{type(error).__name__}: {error}"
                print(f"[gpu] {dtype} batch {batch}: {row['error']}", flush=True)
            section["rows"].append(row)
    rates = [r["end_to_end_images_per_s"] for r in section["rows"] if "error" not in r]
    if device["is_gpu"] and rates:
        best = max((r for r in section["rows"] if "error" not in r),
                   key=lambda r: r["end_to_end_images_per_s"])
        section["best"] = {k: best[k] for k in ("dtype", "batch", "end_to_end_images_per_s",
                                                  "engine_images_per_s")}
        section["met"] = best["end_to_end_images_per_s"] >= GPU_GOAL_IMAGES_PER_S
    return section


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="a tiny model, batch 2, 1 repeat: checks the code paths in seconds")
    parser.add_argument("--models", default=None,
                        help="comma-separated (default resnet50,efficientnet_lite0)")
    parser.add_argument("--batch", type=int, default=None, help="images per batch (32)")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (9)")
    parser.add_argument("--seed-calls", type=int, default=None,
                        help="timed single-image calls of the seed post's method (4)")
    parser.add_argument("--peer-calls", type=int, default=None,
                        help="timed single-image calls of keras.io and of ours (10)")
    parser.add_argument("--no-mixed", dest="mixed", action="store_false",
                        help="skip the mixed_bfloat16 row")
    parser.add_argument("--score-cam-calls", type=int, default=None,
                        help="timed Score-CAM calls per model, one image each (default 1)")
    parser.add_argument("--gpu-batches", default="64,128,256")
    parser.add_argument("--gpu-dtypes", default="float32,mixed_bfloat16,mixed_float16")
    parser.add_argument("--gpu-repeats", type=int, default=None)
    parser.add_argument("--gpu-code-path", action="store_true",
                        help="run the GPU throughput code path even without a GPU")
    parser.add_argument("--wait-for-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="first wait up to SECONDS for a 1-minute load below --quiet-load")
    parser.add_argument("--quiet-load", type=float, default=0.7)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    smoke = args.smoke
    args.models = (args.models or ("tiny_cnn" if smoke else "resnet50,efficientnet_lite0"))
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.batch = args.batch or (2 if smoke else 32)
    args.repeats = args.repeats or (1 if smoke else 9)
    args.seed_calls = args.seed_calls or (1 if smoke else 4)
    args.peer_calls = args.peer_calls or (1 if smoke else 10)
    args.score_cam_calls = args.score_cam_calls or 1
    args.gpu_repeats = args.gpu_repeats or (1 if smoke else 7)
    args.gpu_batches = [2] if smoke else [int(b) for b in args.gpu_batches.split(",")]
    args.gpu_dtypes = (["float32", "mixed_bfloat16"] if smoke
                       else [d.strip() for d in args.gpu_dtypes.split(",")])
    args.gpu_code_path = args.gpu_code_path or smoke
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_arguments(argv)
    for name, value in (("KERAS_BACKEND", "tensorflow"), ("TF_CPP_MIN_LOG_LEVEL", "3"),
                        ("GAPCAM_OFFLINE", "1")):
        os.environ.setdefault(name, value)  # before the first import of Keras
    quiet = wait_for_quiet(args.wait_for_quiet, args.quiet_load) if args.wait_for_quiet else None
    load_start = load_average()
    started = time.time()

    import helpers  # noqa: F401 - first: it imports TensorFlow quietly

    import keras

    backend = keras.backend.backend()
    machine = machine_info()
    machine["matmul_float32_gflops"] = matmul_rates([256] if args.smoke else [2048, 4096],
                                                    1 if args.smoke else 5)
    matmul_gflops = max(machine["matmul_float32_gflops"].values())
    print(f"backend {backend}, device {machine['device']['platform']} "
          f"({machine['device']['kind']}), {machine['cpu_count']} CPUs, load {load_start}",
          flush=True)
    results, goals, failures = [], [], {}
    for name in args.models:
        try:
            result = bench_model(name, args)
        except Exception as error:  # noqa: BLE001 - report and go on with the next model
            failures[name] = "".join(traceback.format_exception_only(error)).strip()
            traceback.print_exc()
            continue
        results.append(result)
        goals += goals_for(result, matmul_gflops)
    report: dict[str, Any] = {
        "command": " ".join([f"KERAS_BACKEND={backend}", python_path(), "benchmarks/bench_cam.py",
                             *(sys.argv[1:] if argv is None else argv)]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "settings": {"smoke": args.smoke, "batch": args.batch, "repeats": args.repeats,
                     "seed_calls": args.seed_calls, "peer_calls": args.peer_calls,
                     "score_cam_calls": args.score_cam_calls,
                     "statistic": "median", "preprocessing": "included in every timing",
                     "images": "sample photos resized to the model input, uint8"},
        "load_average": {"start": load_start, "quiet_wait": quiet},
        "models": results,
        "goals": goals,
        "failures": failures,
    }
    report["gpu_throughput"] = gpu_throughput(args, machine["device"])
    report["load_average"]["end"] = load_average()
    report["wall_s"] = time.time() - started
    table = markdown_tables(report)
    report["markdown"] = table
    print(table)
    print(f"\nload average (1, 5, 15 min): start {load_start}, end {report['load_average']['end']}"
          f"; {machine['device']['platform']} {machine['device']['kind']}, backend {backend}")
    write_report(report, args.output, f"bench_cam_{backend}", args.smoke)
    return report


if __name__ == "__main__":
    main()
