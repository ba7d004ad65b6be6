"""experiments/*.py: the runs notebooks 04 and 06 describe but do not run, and their records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import helpers

ROOT = Path(__file__).resolve().parents[1]


def code_of(notebook: str) -> str:
    """A notebook's code cells, whitespace runs folded to one space."""
    cells = json.loads((ROOT / "notebooks" / notebook).read_text())["cells"]
    return " ".join("\n".join("".join(cell["source"]) for cell in cells
                              if cell["cell_type"] == "code").split())


@pytest.fixture(scope="module")
def protocols(load_script):
    return load_script("experiments/notebook04_protocols.py")


def test_its_notebook_run_is_the_notebooks_protocol(protocols):
    notebook = json.loads((ROOT / "notebooks/04_weakly_supervised_localization.ipynb").read_text())
    source = "\n".join("".join(cell["source"]) for cell in notebook["cells"]
                       if cell["cell_type"] == "code")
    seed, train_seed, test_seed, epochs, batch_size = protocols.RUNS["notebook"]
    assert f"EPOCHS, BATCH_SIZE, LEARNING_RATE = {epochs}, {batch_size}, 3e-3" in source
    assert protocols.LEARNING_RATE == 3e-3
    assert f"TRAIN_SEED, TEST_SEED = {train_seed}, {test_seed}" in source
    assert 'make_digit_canvases(3000, split="train", seed=TRAIN_SEED' in source
    assert 'make_digit_canvases(1000, split="test", seed=TEST_SEED' in source
    assert f"MODEL_SEED = {seed} " in source and "poolings=POOLINGS, seed=MODEL_SEED)" in source
    assert "helpers.set_seed(MODEL_SEED)" in source
    assert (f"NOTEBOOK_SETTINGS = ({seed}, {train_seed}, {test_seed}, {epochs}, {batch_size}, 3e-3)"
            in source)
    assert f"WIDTHS, POOLINGS = {protocols.WIDTHS}, {protocols.POOLINGS}" in source
    options = ", ".join(f"{key}={value!r}".replace("'", '"')
                        for key, value in protocols.CANVAS_OPTIONS.items())
    assert options.replace("canvas_size=48", "canvas_size=CANVAS") in " ".join(source.split())


@pytest.mark.slow
def test_smoke_run_writes_every_score(protocols, tmp_path):
    output = tmp_path / "protocols.json"
    report = protocols.main(["--smoke", "--output", str(output)])
    assert json.loads(output.read_text()) == json.loads(json.dumps(report, default=float))
    assert list(report["runs"]) == ["notebook", "seed 43"]
    for entry in report["runs"].values():
        assert entry["epochs"] == 1 and set(entry["heads"]) == {"gap", "gmp"}
        for scores in entry["heads"].values():
            for key in ("classification", "top1", "gt_known", "max_box_acc", "pointing"):
                assert 0.0 <= scores[key] <= 1.0, key
            assert scores["median_box_over_true_area"] > 0
    assert report["command"].endswith("--smoke --output " + str(output))


@pytest.fixture(scope="module")
def seeds06(load_script):
    return load_script("experiments/notebook06_seeds.py")


def test_notebook06_run_is_the_notebooks_recipe(seeds06):
    notebook = json.loads((ROOT / "notebooks/06_which_map_to_trust.ipynb").read_text())
    source = " ".join("\n".join("".join(cell["source"]) for cell in notebook["cells"]
                                if cell["cell_type"] == "code").split())
    train_seed, test_seed, head_seed = seeds06.RUNS["notebook"]
    assert (f'make_photo_composites({seeds06.TRAIN_SIZE}, split="train", seed={train_seed})'
            in source)
    assert f'make_photo_composites({seeds06.TEST_SIZE}, split="test", seed={test_seed})' in source
    assert f"len(train.class_names), seed={head_seed})" in source
    assert seeds06.LEARNING_RATE == 1e-3
    assert (f"epochs={seeds06.EPOCHS}, batch_size={seeds06.BATCH_SIZE}, "
            f"learning_rate=1e-3, seed={head_seed})") in source
    # The notebook's gaussian(size), run here, is the script's centred Gaussian.
    code = notebook["cells"][next(i for i, cell in enumerate(notebook["cells"])
                                  if "def gaussian(size)" in "".join(cell["source"]))]["source"]
    code = "".join(code)
    start = code.index("def gaussian(size)")
    namespace = {"np": np}
    exec(code[start:code.index("\n\n", start)], namespace)
    np.testing.assert_allclose(namespace["gaussian"](7), seeds06.centred_gaussian())


@pytest.mark.slow
def test_notebook06_smoke_run_writes_every_score(seeds06, tmp_path):
    output = tmp_path / "seeds.json"
    report = seeds06.main(["--smoke", "--output", str(output)])
    assert json.loads(output.read_text()) == json.loads(json.dumps(report, default=float))
    assert list(report["runs"]) == ["notebook", "seeds 11/12/1"]
    for entry in report["runs"].values():
        assert set(entry["methods"]) == {"CAM", "Grad-CAM++", "centred Gaussian"}
        for scores in entry["methods"].values():
            for key in ("gt_known", "max_box_acc", "pointing"):
                assert 0.0 <= scores[key] <= 1.0, key


@pytest.fixture(scope="module")
def scorecam06(load_script):
    return load_script("experiments/notebook06_scorecam.py")


def test_notebook06_scorecam_images_are_the_notebooks(scorecam06):
    source = code_of("06_which_map_to_trust.ipynb")
    assert f'names = {list(scorecam06.PHOTOS)!r}'.replace("'", '"') in source
    assert (f"make_photo_composites({scorecam06.COMPOSITE_COUNT}, split=\"test\", "
            f"seed={scorecam06.COMPOSITE_SEED})") in source
    record = helpers.data.recorded("notebook06_scorecam")
    assert record["images"] == [*scorecam06.PHOTOS,
                                *(f"composite {i}" for i in range(scorecam06.COMPOSITES))]
    assert list(record["configs"]) == list(scorecam06.CONFIGS)
    for weighting in scorecam06.WEIGHTINGS:
        for config in scorecam06.CONFIGS:
            maps = np.asarray(record["maps"][weighting][config])
            assert maps.shape == (len(record["images"]), 7, 7) and np.isfinite(maps).all()


@pytest.mark.slow
def test_notebook06_scorecam_smoke_run_records_the_maps_score_cam_makes(scorecam06, tmp_path):
    output = tmp_path / "scorecam.json"
    report = scorecam06.main(["--smoke", "--output", str(output)])
    assert json.loads(output.read_text()) == report
    assert report["images"] == ["chelsea"] and list(report["configs"]) == ["trained", "reinit 0"]
    record = helpers.data.recorded("notebook06_scorecam")
    assert report["class_ids"] == record["class_ids"][:1]
    for weighting in scorecam06.WEIGHTINGS:
        trained = np.asarray(report["maps"][weighting]["trained"])
        np.testing.assert_allclose(trained[0], record["maps"][weighting]["trained"][0],
                                   rtol=1e-3, atol=1e-3 * np.abs(trained).max())
        assert not np.allclose(report["maps"][weighting]["reinit 0"], trained)


def test_every_record_loads_and_an_unknown_name_lists_them():
    names = sorted(path.stem for path in (ROOT / "helpers/data/records").glob("*.json"))
    assert names == ["notebook02_seeds", "notebook02_seeds_jax", "notebook04_protocols",
                     "notebook05_seeds", "notebook05_seeds_jax", "notebook06_scorecam",
                     "notebook06_seeds"]
    for name in names:
        assert "runs" in helpers.data.recorded(name) or "maps" in helpers.data.recorded(name)
    for bad in ("notebook07", "../pyproject", None):
        with pytest.raises(ValueError, match="notebook02_seeds, notebook02_seeds_jax"):
            helpers.data.recorded(bad)


def test_the_records_are_package_data_and_each_experiment_writes_its_own():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"helpers.data" = ["records/*.json"]' in pyproject
    for script in (ROOT / "experiments").glob("notebook*.py"):
        text = script.read_text()
        assert (f'ROOT / "helpers/data/records/{script.stem}.json"' in text
                or f'_record.parse("{script.stem}"' in text), script


@pytest.fixture(scope="module")
def seeds02(load_script):
    return load_script("experiments/notebook02_seeds.py")


def test_notebook02_runs_are_the_notebooks_recipe(seeds02):
    source = code_of("02_global_average_pooling.ipynb")
    assert seeds02.SEEDS[0] == 42 and "MODEL_SEED = 42" in source and "NOTEBOOK_SEED = 42" in source
    assert (f"CANVAS, DIGIT_SIZE, JITTER = {seeds02.CANVAS}, {seeds02.DIGIT_SIZE}, "
            f"{seeds02.JITTER}") in source
    assert (f"EPOCHS, BATCH_SIZE, LEARNING_RATE = {seeds02.EPOCHS}, {seeds02.BATCH_SIZE}, 3e-3"
            in source) and seeds02.LEARNING_RATE == 3e-3
    assert f"make_digit_canvases({seeds02.TRAIN_SIZE}, " in source
    assert f"make_digit_canvases({seeds02.TEST_SIZE}, positions=\"random\"" in source
    assert f"make_digit_canvases({seeds02.SHIFT_SIZE}, " in source
    assert "SHIFTS = list(range(0, 13, 2))" in source and seeds02.SHIFTS == tuple(range(0, 13, 2))
    for name, backend in (("notebook02_seeds", "tensorflow"), ("notebook02_seeds_jax", "jax")):
        record = helpers.data.recorded(name)
        assert record["keras_backend"] == backend and record["epochs"] == seeds02.EPOCHS
        assert list(record["runs"]) == [str(seed) for seed in seeds02.SEEDS]


@pytest.mark.slow
def test_notebook02_smoke_run_writes_every_score(seeds02, tmp_path):
    output = tmp_path / "seeds02.json"
    report = seeds02.main(["--smoke", "--output", str(output)])
    assert json.loads(output.read_text()) == json.loads(json.dumps(report, default=float))
    assert list(report["runs"]) == ["42", "43"] and report["epochs"] == 1
    for run in report["runs"].values():
        assert set(run) == {"flatten", "gap"}
        for scores in run.values():
            assert len(scores["shifts"]) == len(seeds02.SHIFTS)
            for key in ("train", "centred test", "anywhere", "first-epoch centred test"):
                assert 0.0 <= scores[key] <= 1.0, key
        assert 0.0 <= run["gap"]["peak on digit"] <= 1.0
        assert np.isfinite(run["flatten"]["evidence moved"])
    assert report["command"].endswith("--smoke --output " + str(output))


@pytest.fixture(scope="module")
def seeds05(load_script):
    return load_script("experiments/notebook05_seeds.py")


def test_notebook05_runs_are_the_notebooks_recipe(seeds05):
    """The script's first run is notebook 05's own: the same seeds, sizes and training."""
    source = code_of("05_transfer_learning_and_cam.ipynb")
    train_seed, test_seed, model_seed = seeds05.SETTINGS["notebook"]
    assert f"TRAIN_SEED, TEST_SEED, MODEL_SEED = {train_seed}, {test_seed}, {model_seed}" in source
    assert f"NOTEBOOK_SETTINGS = ({train_seed}, {test_seed}, {model_seed}, {seeds05.TRAIN_SIZE})" in source
    assert f"make_photo_composites({seeds05.TRAIN_SIZE}, split=\"train\"" in source
    assert f"make_photo_composites({seeds05.TEST_SIZE}, split=\"test\"" in source
    assert (f"EPOCHS, BATCH_SIZE, LEARNING_RATE = {seeds05.EPOCHS}, {seeds05.BATCH_SIZE}, 1e-3"
            in source) and seeds05.LEARNING_RATE == 1e-3
    assert f"TAU = {seeds05.TAU}" in source
    for name, backend in (("notebook05_seeds", "tensorflow"), ("notebook05_seeds_jax", "jax")):
        record = helpers.data.recorded(name)
        assert record["keras_backend"] == backend and not record["smoke"]
        assert list(record["runs"]) == list(seeds05.SETTINGS)


@pytest.mark.slow
def test_notebook05_smoke_run_writes_every_score(seeds05, tmp_path):
    output = tmp_path / "seeds05.json"
    report = seeds05.main(["--smoke", "--output", str(output)])
    assert json.loads(output.read_text()) == json.loads(json.dumps(report, default=float))
    assert list(report["runs"]) == list(seeds05.SETTINGS)[:2]
    for run in report["runs"].values():
        for key in ("accuracy", "gt_known", "max_box_acc", "max_box_acc_at_0.5", "zhou_max_box_acc",
                    "pointing_15px", "imagenet_max_box_acc"):
            assert 0.0 <= run[key] <= 1.0, key
        assert set(run["per_class_accuracy"]) == set(seeds05.IMAGENET_CLASS)
