"""Notebook 05's experiment (a GAP head on frozen EfficientNet-Lite0, CAM boxes on composites)
over four seed settings: the notebook's own and three more, each drawing new training and test
composites and a new initial head.

    .venv/bin/python experiments/notebook05_seeds.py            # a few minutes, 2 cores
    KERAS_BACKEND=jax .venv/bin/python experiments/notebook05_seeds.py \
        --output helpers/data/records/notebook05_seeds_jax.json # the same on JAX
    .venv/bin/python experiments/notebook05_seeds.py --smoke    # the code path only

The notebook trains one head (TRAIN_SEED, TEST_SEED, MODEL_SEED = 1, 2, 0) and states in its
text what holds over these runs; this script is where those runs come from, with the notebook's
own recipe (sizes, epochs, batches, learning rate, thresholds), changing only the seeds. The
notebook reads the records and asserts only what holds for each.

Writes helpers/data/records/notebook05_seeds.json (committed).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _record  # noqa: E402

#: (TRAIN_SEED, TEST_SEED, MODEL_SEED): the notebook's, then three more.
SETTINGS = {"notebook": (1, 2, 0), "seeds 3, 4, 1": (3, 4, 1), "seeds 5, 6, 2": (5, 6, 2),
            "seeds 7, 8, 3": (7, 8, 3)}
TRAIN_SIZE, TEST_SIZE = 300, 200
EPOCHS, BATCH_SIZE, LEARNING_RATE = 30, 32, 1e-3
TAU = 0.2
#: Exercise 3: the closest ImageNet classes.
IMAGENET_CLASS = {"cat": 285, "coffee_cup": 968, "flower": 985, "motorcycle": 670, "rocket": 657}


def run(classifier: Any, seeds: tuple[int, int, int], smoke: bool) -> dict[str, Any]:
    """Notebook 05 sections 1-7 and exercise 3 with these seeds."""
    import numpy as np

    import helpers

    train_seed, test_seed, model_seed = seeds
    scale = 10 if smoke else 1
    train = helpers.make_photo_composites(TRAIN_SIZE // scale, split="train", seed=train_seed)
    test = helpers.make_photo_composites(TEST_SIZE // scale, split="test", seed=test_seed)
    classes = train.class_names
    widths = test.boxes[:, 2] - test.boxes[:, 0] + 1
    heights = test.boxes[:, 3] - test.boxes[:, 1] + 1
    object_share = widths * heights / 224**2
    model = helpers.build_transfer_model(classifier, len(classes), seed=model_seed)
    start = time.perf_counter()
    helpers.fit_transfer_head(model, train.images, train.labels, epochs=EPOCHS,
                              batch_size=BATCH_SIZE, learning_rate=LEARNING_RATE, seed=model_seed)
    seconds = time.perf_counter() - start
    cams = helpers.class_activation_maps(model, test.images, classes=test.labels[:, None])
    predicted = cams.logits.argmax(axis=1)
    per_class = [float(np.mean(predicted[test.labels == c] == c)) for c in range(len(classes))]
    share = [float(np.median(object_share[test.labels == c])) for c in range(len(classes))]
    report = helpers.localization_report(cams.maps[:, 0], test.boxes, labels=test.labels,
                                         predicted=predicted, threshold=TAU)
    zhou = helpers.localization_report(cams.maps[:, 0], test.boxes, threshold=TAU,
                                       protocol="zhou", pointing_tolerance=0)
    best_tau = zhou.max_box.best_threshold
    at_best = helpers.localization_report(cams.maps[:, 0], test.boxes, threshold=best_tau,
                                          protocol="zhou", thresholds=[best_tau])
    peaks = report.cams.max(axis=(1, 2), keepdims=True)
    kept = (report.cams >= TAU * peaks).mean(axis=(1, 2))
    has_box = ~np.all(at_best.boxes == -1, axis=1)
    width_ratio = np.full(len(test), np.nan)
    height_ratio = np.full(len(test), np.nan)
    width_ratio[has_box] = (at_best.boxes[has_box, 2] - at_best.boxes[has_box, 0] + 1) / widths[has_box]
    height_ratio[has_box] = (at_best.boxes[has_box, 3] - at_best.boxes[has_box, 1] + 1) / heights[has_box]
    imagenet_ids = np.array([IMAGENET_CLASS[name] for name in classes])[test.labels]
    imagenet_maps = helpers.class_activation_maps(classifier, test.images,
                                                  classes=imagenet_ids[:, None])
    imagenet = helpers.localization_report(imagenet_maps.maps[:, 0], test.boxes)
    imagenet_zhou = helpers.localization_report(imagenet_maps.maps[:, 0], test.boxes,
                                                protocol="zhou")
    at_half = report.max_box.iou_thresholds.index(0.5)
    return {
        "seeds": list(seeds), "head_seconds": round(seconds, 1),
        "accuracy": float(np.mean(predicted == test.labels)),
        "per_class_accuracy": dict(zip(classes, per_class)),
        "per_class_object_share": dict(zip(classes, share)),
        "gt_known": report.gt_known, "top1": report.top1,
        "max_box_acc": report.max_box.best,
        "max_box_acc_at_0.5": float(report.max_box.best_per_iou[at_half]),
        "zhou_max_box_acc": zhou.max_box.best, "zhou_best_tau": best_tau,
        "pointing_15px": report.pointing, "peak_in_box": zhou.pointing,
        "median_object_share": float(np.median(object_share)),
        "median_kept_at_tau": float(np.median(kept)),
        "per_class_gt_known_at_zhou_best": {
            name: float(at_best.hits[test.labels == c].mean()) for c, name in enumerate(classes)},
        "rocket_width_ratio": float(np.nanmedian(width_ratio[test.labels == classes.index("rocket")])),
        "motorcycle_height_ratio": float(np.nanmedian(
            height_ratio[test.labels == classes.index("motorcycle")])),
        "imagenet_max_box_acc": imagenet.max_box.best,
        "imagenet_zhou_max_box_acc": imagenet_zhou.max_box.best,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    arguments = _record.parse("notebook05_seeds", __doc__,
                              "two settings, a tenth of the composites", argv)
    import helpers

    classifier = helpers.load_classifier("efficientnet_lite0")
    runs = {}
    for name, seeds in list(SETTINGS.items())[:2 if arguments.smoke else None]:
        runs[name] = run(classifier, seeds, arguments.smoke)
        print(name, {key: (round(value, 3) if isinstance(value, float) else value)
                     for key, value in runs[name].items() if not isinstance(value, dict)})
    return _record.write("notebook05_seeds", argv, arguments.output, {
        "recipe": {"train": TRAIN_SIZE, "test": TEST_SIZE, "epochs": EPOCHS,
                   "batch_size": BATCH_SIZE, "learning_rate": LEARNING_RATE, "tau": TAU},
        "smoke": arguments.smoke, "runs": runs})


if __name__ == "__main__":
    main()
