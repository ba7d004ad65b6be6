"""Score-CAM's sanity-check maps that notebook 06 (section 2) reads instead of computing.

    .venv/bin/python experiments/notebook06_scorecam.py            # about 10 min, 2 cores
    .venv/bin/python experiments/notebook06_scorecam.py --smoke    # one image, two configs

Score-CAM at EfficientNet-Lite0's `top_relu` runs the network once per channel (1,280 passes
per image and map, 7 to 20 s on 2 shared cores), too slow for the notebook's budget of 30 s a
cell. This script computes, for both weightings (``"probability"``: the authors',
haofanwang/Score-CAM; ``"softmax"``: pytorch-grad-cam's), the maps of the top-1 class of the
notebook's Score-CAM images (four sample photos and the first two off-centre composites of
``make_photo_composites(13, split="test", seed=2)``) with the trained network and with **every**
layer randomised (re-initialised with seeds 0 and 1, permuted with seed 0). The notebook
recomputes the trained map of one photo and checks it against this file before using the rest.

Writes helpers/data/records/notebook06_scorecam.json (committed: the notebook reads it).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _record  # noqa: E402


#: The sample photos, then how many of the notebook's 13 test composites (seed 2).
PHOTOS = ("chelsea", "coffee", "motorcycle", "astronaut")
COMPOSITES, COMPOSITE_COUNT, COMPOSITE_SEED = 2, 13, 2
#: Randomisations of every layer: name → (mode, seed); "trained" is the model as it ships.
CONFIGS = {"trained": None, "reinit 0": ("reinit", 0), "reinit 1": ("reinit", 1),
           "permute 0": ("permute", 0)}
WEIGHTINGS = ("probability", "softmax")


def images_and_classes(smoke: bool = False) -> tuple[list[str], list[Any], Any, Any]:
    """The Score-CAM images of notebook 06 (names, images), the classifier and the top-1 ids."""
    import helpers

    classifier = helpers.load_classifier("efficientnet_lite0")
    samples = helpers.sample_images()
    composites = helpers.make_photo_composites(COMPOSITE_COUNT, split="test", seed=COMPOSITE_SEED)
    names = [*PHOTOS, *(f"composite {i}" for i in range(COMPOSITES))]
    images = [*(samples[name] for name in PHOTOS), *composites.images[:COMPOSITES]]
    if smoke:
        names, images = names[:1], images[:1]
    class_ids = helpers.class_activation_maps(classifier, images).class_ids  # (N, 1)
    return names, images, classifier, class_ids


def main(argv: list[str] | None = None) -> dict[str, Any]:
    arguments = _record.parse("notebook06_scorecam", __doc__,
                              "one image, trained and one re-initialisation: the code path", argv)
    import helpers

    names, images, classifier, class_ids = images_and_classes(arguments.smoke)
    every_layer = [layer.name for layer in classifier.model.layers if layer.weights]
    maps: dict[str, dict[str, list]] = {weighting: {} for weighting in WEIGHTINGS}
    start = time.perf_counter()
    configs = dict(list(CONFIGS.items())[:2]) if arguments.smoke else CONFIGS
    for config, randomisation in configs.items():
        for weighting in WEIGHTINGS:
            def score_cam(weighting: str = weighting) -> Any:
                return helpers.score_cam(classifier, images, classes=class_ids,
                                         weighting=weighting).low_res[:, 0]
            if randomisation is None:
                low_res = score_cam()
            else:
                mode, seed = randomisation
                with helpers.randomize_layers(classifier, every_layer, seed=seed, mode=mode):
                    low_res = score_cam()
            maps[weighting][config] = low_res.tolist()
            print(f"{config:<10s} {weighting:<12s} {time.perf_counter() - start:6.0f} s",
                  flush=True)
    return _record.write("notebook06_scorecam", argv, arguments.output, {
        "layer": "top_relu", "images": names, "class_ids": class_ids[:, 0].tolist(),
        "configs": {name: list(value) if value else None for name, value in configs.items()},
        "seconds": round(time.perf_counter() - start),
        "maps": maps,  # weighting → config → (N, 7, 7) low_res, before any ReLU
    }, indent=1)


if __name__ == "__main__":
    main()
