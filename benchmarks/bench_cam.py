"""Time the CAM engine side by side with plain classification and with its peers (issue 6).

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
import json
import os
import platform
import statistics
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: The goals of issue 6: (key, description, target, kind). "max": measured ≤ target;
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


# --------------------------------------------------------------------------------------------
# Machine, load, timing
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Data and models
# --------------------------------------------------------------------------------------------


def multiply_adds(model: Any) -> int:
    """Multiply-adds of one image through the model's layers that have a ``kernel``
    (convolutions, depthwise convolutions, Dense; nested models included): the arithmetic
    that dominates a CNN. Each output position costs the kernel's size."""
    import math

    from helpers.models.architecture import iter_layers

    total = 0
    for layer in iter_layers(model):
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            continue
        shape = tuple(layer.output.shape[1:])
        positions = shape[1:] if getattr(layer, "data_format", None) == "channels_first" \
            else shape[:-1]
        total += math.prod(positions) * math.prod(kernel.shape)
    return total


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


def photo_batch(count: int, size: tuple[int, int]) -> Any:
    """``count`` RGB uint8 images at ``size``: the seven sample photos, resized whole, with
    flips and shifts so that no two are the same."""
    import numpy as np

    import keras

    import helpers

    # Resized whole, bilinear with antialiasing, as Classifier.preprocess resizes.
    photos = np.stack([
        np.clip(keras.ops.convert_to_numpy(keras.ops.image.resize(
            photo.astype(np.float32), size, interpolation="bilinear", antialias=True)), 0, 255)
        for photo in helpers.sample_images().values()
    ]).astype(np.uint8)
    batch = []
    for i in range(count):
        image = photos[i % len(photos)]
        if (i // len(photos)) % 2:
            image = image[:, ::-1]
        batch.append(np.roll(image, 3 * (i // len(photos)), axis=0))
    return np.stack(batch)


def tiny_classifier() -> Any:
    """A small GAP → Dense CNN at 64 × 64 for --smoke (every code path in seconds)."""
    import keras

    from helpers.models import Classifier

    keras.utils.set_random_seed(0)
    image = keras.Input((64, 64, 3), name="image")
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(image)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Conv2D(16, 3, strides=4, padding="same", activation="relu",
                            name="last_conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    logits = keras.layers.Dense(10, name="predictions")(x)
    model = keras.Model(image, logits, name="tiny_cnn")
    return Classifier(name="tiny_cnn", model=model, input_size=(64, 64), num_classes=10,
                      normalize=lambda x: x / 127.5 - 1.0)


def load_model(name: str) -> Any:
    import helpers

    if name == "tiny_cnn":
        return tiny_classifier()
    if name == "efficientnet_lite0":
        return helpers.load_classifier("efficientnet_lite0")
    return helpers.load_classifier(name, weights=None)  # random weights: fine for timing


# --------------------------------------------------------------------------------------------
# The peers, re-implemented faithfully
# --------------------------------------------------------------------------------------------


def seed_post_cam(cam_model: Any, amp_layer_weights: Any, image: Any,
                  preprocess: Callable[[Any], Any]) -> Any:
    """The seed post's order of work (Alexis Cook, "Global Average Pooling Layers for Object
    Localization", 2017, ResNet-50 CAM), for one image: run the model once for the last conv
    output (1, 7, 7, 2048) and the predictions (``predict``, as the post does), take the arg max,
    upsample **every** feature map with ``scipy.ndimage.zoom(..., (32, 32, 1), order=1)`` to
    (224, 224, 2048), then ``np.dot`` with the class's Dense weights, reshaped to (224, 224).
    The zoom factors are input size / feature size (32 for both models here)."""
    import numpy as np
    import scipy.ndimage

    last_conv_output, pred_vec = cam_model.predict(preprocess(image), verbose=0)
    last_conv_output = np.squeeze(last_conv_output)  # (7, 7, k)
    pred = np.argmax(pred_vec)
    height, width = image.shape[:2]
    factors = (height / last_conv_output.shape[0], width / last_conv_output.shape[1], 1)
    mat_for_mult = scipy.ndimage.zoom(last_conv_output, factors, order=1)  # (224, 224, k)
    weights = amp_layer_weights[:, pred]
    channels = mat_for_mult.shape[-1]
    final_output = np.dot(mat_for_mult.reshape((height * width, channels)), weights)
    return final_output.reshape(height, width), pred


def make_gradcam_heatmap(img_array: Any, model: Any, last_conv_layer_name: str,
                         pred_index: Any = None) -> Any:
    """keras.io ``examples/vision/grad_cam.py`` (fchollet), as published: builds the gradient
    model on every call, one image, ``tf.GradientTape``, the gradient of the top class's score
    with respect to the last conv output, channel weights = spatial mean of the gradient,
    weighted sum, ReLU, divided by the max. Returns the low-resolution (7 × 7) heatmap (the
    example upsamples only when it draws, with PIL)."""
    import keras
    import tensorflow as tf

    grad_model = keras.models.Model(
        model.input, [model.get_layer(last_conv_layer_name).output, model.output]
    )
    with tf.GradientTape() as tape:
        last_conv_layer_output, preds = grad_model(img_array)
        if pred_index is None:
            pred_index = tf.argmax(preds[0])
        class_channel = preds[:, pred_index]
    grads = tape.gradient(class_channel, last_conv_layer_output)
    pooled_grads = tf.reduce_mean(grads, axis=(0, 1, 2))
    last_conv_layer_output = last_conv_layer_output[0]
    heatmap = last_conv_layer_output @ pooled_grads[..., tf.newaxis]
    heatmap = tf.squeeze(heatmap)
    heatmap = tf.maximum(heatmap, 0) / tf.math.reduce_max(heatmap)
    return heatmap.numpy()


def tf_keras_vis_gradcam(model: Any) -> tuple[Callable[..., Any] | None, str | None]:
    """tf-keras-vis ``Gradcam(model, model_modifier=None, clone=True)`` with a
    ``CategoricalScore``; (function(batch, class ids, layer) → maps (B, H, W), None), or
    (None, the reason it cannot run)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return None, "tf-keras-vis needs the TensorFlow backend (tf.GradientTape)"
    try:
        with warnings.catch_warnings():  # its own scipy.ndimage.interpolation deprecation
            warnings.simplefilter("ignore", DeprecationWarning)
            from tf_keras_vis.gradcam import Gradcam
            from tf_keras_vis.utils.scores import CategoricalScore
    except Exception as error:  # noqa: BLE001 - any import failure is the reason to report
        return None, (f"tf-keras-vis is not importable ({type(error).__name__}: {error}); "
                      "install requirements-bench.txt")
    gradcam = Gradcam(model, model_modifier=None, clone=True)

    def run(batch: Any, class_ids: Any, layer: str) -> Any:
        # The same target layer as ours (no search for the last Conv layer, which would stop
        # before the BatchNorm/activation), expanded to the input size and normalised (defaults).
        return gradcam(CategoricalScore(list(class_ids)), batch, penultimate_layer=layer,
                       seek_penultimate_conv_layer=False)

    return run, None


def correlation(a: Any, b: Any) -> float:
    import numpy as np

    a, b = np.ravel(np.asarray(a, np.float64)), np.ravel(np.asarray(b, np.float64))
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


# --------------------------------------------------------------------------------------------
# One model, side by side
# --------------------------------------------------------------------------------------------


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


def goals_for(result: dict[str, Any], matmul_gflops: float | None = None
              ) -> list[dict[str, Any]]:
    """Each goal of issue 6 for one model: measured value, verdict, and the ceiling the
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


# --------------------------------------------------------------------------------------------
# GPU throughput
# --------------------------------------------------------------------------------------------


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
    head = cam.find_cam_head(classifier)
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


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

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
    suffix = "_smoke" if args.smoke else ""
    output = args.output or ROOT / f"benchmarks/results/bench_cam_{backend}{suffix}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, default=float))
    print(f"written: {output}")
    return report


if __name__ == "__main__":
    main()
