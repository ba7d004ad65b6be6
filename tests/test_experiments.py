"""experiments/notebook04_protocols.py: the runs notebook 04 describes but does not run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


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
    assert f'make_digit_canvases(3000, split="train", seed={train_seed}' in source
    assert f'make_digit_canvases(1000, split="test", seed={test_seed}' in source
    assert f"poolings=POOLINGS, seed={seed})" in source and f"helpers.set_seed({seed})" in source
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
    assert "np.exp(-((grid_y - 3) ** 2 + (grid_x - 3) ** 2) / (2 * 1.75**2))" in source


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
