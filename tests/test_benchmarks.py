"""The benchmark (benchmarks/bench_cam.py) in its --smoke form: every code path, a tiny model,
one repeat, a few seconds. Checks what the JSON report contains, never the timings."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

# Also run under KERAS_BACKEND=jax (make test-jax).
pytestmark = pytest.mark.jax

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench_cam(load_script):
    return load_script("benchmarks/bench_cam.py")


@pytest.fixture(scope="module")
def smoke_report(bench_cam, tmp_path_factory):
    output = tmp_path_factory.mktemp("bench") / "smoke.json"
    returned = bench_cam.main(["--smoke", "--output", str(output)])
    written = json.loads(output.read_text())
    assert written["goals"] == json.loads(json.dumps(returned["goals"], default=float))
    return written


@pytest.mark.slow
def test_machine_device_backend_and_load_are_recorded(smoke_report):
    import keras

    machine = smoke_report["machine"]
    assert machine["keras_backend"] == keras.backend.backend()
    assert machine["device"]["platform"] in {"cpu", "gpu", "tpu"}
    assert machine["cpu_count"] >= 1 and machine["versions"]["keras"]
    load = smoke_report["load_average"]
    assert len(load["start"]) == 3 and len(load["end"]) == 3
    assert smoke_report["command"].startswith(f"KERAS_BACKEND={keras.backend.backend()}")
    assert "benchmarks/bench_cam.py --smoke --output " in smoke_report["command"]  # its argv
    assert smoke_report["command"].endswith("smoke.json")
    assert smoke_report["date"][:2] == "20"
    assert smoke_report["settings"]["smoke"] is True and smoke_report["failures"] == {}


def _tf_keras_vis_importable() -> bool:
    return importlib.util.find_spec("tf_keras_vis") is not None


@pytest.mark.slow
def test_every_method_is_measured_with_medians(smoke_report):
    """Ours and the seed post are always measured; a peer is left out only for the reason that
    applies here (the keras.io and tf-keras-vis code needs TensorFlow, tf-keras-vis is installed
    by `make bench` only), never silently."""
    import keras

    (result,) = smoke_report["models"]
    on_tensorflow = keras.backend.backend() == "tensorflow"
    expected_unmeasured = {}
    if not on_tensorflow:
        expected_unmeasured = {"keras_io_grad_cam": "TensorFlow-only",
                               "tf_keras_vis_gradcam": "needs the TensorFlow backend"}
    elif not _tf_keras_vis_importable():
        expected_unmeasured = {"tf_keras_vis_gradcam": "not importable"}
    assert set(result["not_measured"]) == set(expected_unmeasured)
    for key, reason in expected_unmeasured.items():
        assert reason in result["not_measured"][key]
    assert {
        "classify", "classify_predict_on_batch", "cam_top1_upsampled", "cam_top1_lazy_maps",
        "cam_all_classes_low_res", "grad_cam_top1_upsampled", "seed_post_cam",
        "keras_io_grad_cam", "tf_keras_vis_gradcam", "cam_top1_upsampled_batch1",
        "grad_cam_plus_plus_top1_upsampled", "score_cam_top1_batch1",
    } - set(expected_unmeasured) <= set(result["measurements"])
    for row in result["measurements"].values():
        assert row["median_s"] > 0 and row["repeats"] == len(row["times_s"]) >= 1
        assert row["per_image_s"] == pytest.approx(row["median_s"] / row["images_per_call"])


@pytest.mark.slow
def test_peers_compute_the_same_maps(smoke_report):
    """The re-implemented peers are faithful: their maps, and ours brought to their format
    (scipy zoom, ReLU), correlate almost perfectly; our own bilinear upsampling differs from
    scipy's corner-aligned zoom, so that comparison is only loosely tied."""
    (result,) = smoke_report["models"]
    agreement = result["agreement"]
    assert agreement["seed_post_vs_ours_zoomed"] > 0.999
    assert agreement["seed_post_vs_ours_upsampled_bilinear"] > 0.8
    for name in ("keras_io_vs_ours_grad_cam_relu", "tf_keras_vis_vs_ours_grad_cam_relu_zoomed"):
        if name in agreement and not math.isnan(agreement[name]):  # NaN: an all-zero ReLU map
            assert agreement[name] > 0.999, name


@pytest.mark.slow
def test_goals_have_verdicts(smoke_report):
    keys = {goal["goal"] for goal in smoke_report["goals"]}
    assert keys == {"cam_over_classify", "all_over_classify", "seed_speedup", "keras_io_speedup",
                    "tkv_speedup", "grad_cam_tkv_speedup"}
    for goal in smoke_report["goals"]:
        assert goal["met"] in (True, False, None) and goal["target"] > 0
        if goal["met"] is None:
            assert goal["note"].startswith("not measured")
        else:
            assert goal["measured"] > 0
            assert goal["met"] == (goal["measured"] <= goal["target"] if goal["kind"] == "max"
                                   else goal["measured"] >= goal["target"])
    assert "| goal | model | target | measured | verdict |" in smoke_report["markdown"]


@pytest.mark.slow
def test_gpu_throughput_section(smoke_report):
    gpu = smoke_report["gpu_throughput"]
    assert gpu["goal_images_per_s"] == 3000
    if smoke_report["machine"]["device"]["platform"] != "gpu":
        assert gpu["measured"] is False and "no GPU in this session" in gpu["reason"]
    rows = gpu["rows"]  # the smoke run exercises the code path on any device
    assert {row["dtype"] for row in rows} == {"float32", "mixed_bfloat16"}
    for row in rows:
        assert "error" not in row, row.get("error")
        assert row["end_to_end_images_per_s"] > 0 and row["engine_images_per_s"] > 0


@pytest.mark.slow
def test_arithmetic_is_counted(smoke_report):
    (result,) = smoke_report["models"]
    # tiny_cnn: 3×3 convolutions 3 → 8 at 32 × 32 and 8 → 16 at 8 × 8, then Dense 16 → 10
    assert result["multiply_adds_per_image"] == 32 * 32 * 9 * 3 * 8 + 8 * 8 * 9 * 8 * 16 + 160
    m = result["measurements"]
    classify = min(m["classify"]["median_s"], m["classify_predict_on_batch"]["median_s"])
    assert result["classify_gflops"] == pytest.approx(
        2 * result["multiply_adds_per_image"] * result["batch"] / classify / 1e9)
    rates = smoke_report["machine"]["matmul_float32_gflops"]
    assert list(rates) == ["256"] and rates["256"] > 0
    assert "256 × 256:" in smoke_report["markdown"]
    assert "classified at" in smoke_report["markdown"]


def test_multiply_adds_of_nested_depthwise_and_channels_first_layers(load_script):
    import keras

    inner = keras.Sequential([
        keras.Input((16, 16, 4)),
        keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2),  # 16·16·9·4·2
        keras.layers.Conv2D(6, 1, strides=2, groups=2),  # 8·8·(1·1·4·6)
    ])
    image = keras.Input((16, 16, 4))
    x = inner(image)
    x = keras.layers.Permute((3, 1, 2))(x)  # (6, 8, 8)
    x = keras.layers.Conv2D(5, 3, data_format="channels_first")(x)  # 6·6·(3·3·6·5)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(7)(x)  # 180·7
    model = keras.Model(image, outputs)
    expected = 16 * 16 * 9 * 4 * 2 + 8 * 8 * 4 * 6 + 6 * 6 * 9 * 6 * 5 + 180 * 7
    assert load_script("benchmarks/workload.py").multiply_adds(model) == expected


@pytest.mark.slow
def test_the_resource_benchmark_reports_every_case(load_script, tmp_path):
    """bench_resources.py --smoke: its report holds each of the audit's resource cases (the
    figures themselves are measurements: README, not asserted here)."""
    bench = load_script("benchmarks/bench_resources.py")
    output = tmp_path / "resources.json"
    report = bench.main(["--smoke", "--output", str(output)])
    assert json.loads(output.read_text())["command"] == report["command"]
    loads = report["repeated_loads"]
    assert loads["rounds"] == 2 and len(loads["resident_mib_after_each"]) == 2
    explorer = report["explorer"]
    assert explorer["upload"] == [800, 600] and len(explorer["after_upload_move_s"]) == 3
    assert all(t > 0 for t in explorer["sample_move_s"] + explorer["after_upload_move_s"])
    huge = report["declared_huge_image"]
    assert huge["declared"] == [8000, 8000] and huge["file_bytes"] < 1000
    assert huge["outcome"].startswith("refused: ") and "24,000,000" in huge["outcome"]
