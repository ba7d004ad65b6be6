"""Sample photos that ship inside scikit-image and scikit-learn (no download needed).

Introduced in notebook 01. Sources and licenses are listed in ``data/README.md`` and in
:data:`SAMPLE_IMAGE_SOURCES`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["SAMPLE_IMAGE_NAMES", "SAMPLE_IMAGE_SOURCES", "sample_images", "sample_image"]

#: name -> (package it ships in, source and license)
SAMPLE_IMAGE_SOURCES: dict[str, tuple[str, str]] = {
    "chelsea": ("scikit-image", "Chelsea the cat; CC0, photo by Stefan van der Walt"),
    "coffee": ("scikit-image", "Coffee cup, Pikolo Espresso Bar; CC0, photo by Rachel Michetti"),
    "astronaut": ("scikit-image", "Eileen Collins, NASA Great Images; public domain"),
    "motorcycle": ("scikit-image", "Middlebury 2014 stereo benchmark, left view (stereo_motorcycle)"),
    "rocket": ("scikit-image", "DSCOVR launch on Falcon 9, SpaceX; public domain"),
    "china": ("scikit-learn", "china.jpg, by danielbuechele on Flickr; CC BY 2.0"),
    "flower": ("scikit-learn", "flower.jpg, by vultilion on Flickr; CC BY 2.0"),
}
SAMPLE_IMAGE_NAMES: tuple[str, ...] = tuple(SAMPLE_IMAGE_SOURCES)


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        if name == "motorcycle":
            return skimage.data.stereo_motorcycle()[0]
        return getattr(skimage.data, name)()

    return load


def _sklearn(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")

    return load


_LOADERS: dict[str, Callable[[], np.ndarray]] = {
    name: (_skimage(name) if package == "scikit-image" else _sklearn(name))
    for name, (package, _) in SAMPLE_IMAGE_SOURCES.items()
}


def sample_image(name: str) -> np.ndarray:
    """Return one sample photo as an RGB uint8 array ``(H, W, 3)``.

    Parameters
    ----------
    name
        One of :data:`SAMPLE_IMAGE_NAMES`: chelsea, coffee, astronaut, motorcycle, rocket, china,
        flower.

    Raises
    ------
    TypeError
        ``name`` is not a str.
    ValueError
        ``name`` is not one of the sample images.
    """
    if not isinstance(name, str):
        raise TypeError(
            f"a sample image name must be a str, got {type(name).__name__} {name!r:.80}; "
            f"available: {', '.join(SAMPLE_IMAGE_NAMES)}"
        )
    if name not in _LOADERS:
        raise ValueError(f"unknown sample image {name!r}; available: {', '.join(SAMPLE_IMAGE_NAMES)}")
    image = np.ascontiguousarray(_LOADERS[name]())
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise RuntimeError(f"sample image {name!r} is not RGB uint8: {image.dtype} {image.shape}")
    return image


def sample_images(names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Return sample photos by name, in the order asked (all seven by default).

    Parameters
    ----------
    names
        A list or tuple of names from :data:`SAMPLE_IMAGE_NAMES`, or None for all seven. One
        name alone is a str: use :func:`sample_image` (a str is refused here, not read letter by
        letter).

    Returns
    -------
    dict[str, numpy.ndarray]
        name -> RGB uint8 ``(H, W, 3)``; the images have different sizes. Classifiers and CAM
        functions take the dict itself (its values, in this order).

    Raises
    ------
    TypeError
        ``names`` is a str or not a sequence of str.
    ValueError
        ``names`` is empty or names an unknown image.
    """
    if names is None:
        names = SAMPLE_IMAGE_NAMES
    if isinstance(names, (str, bytes)):
        raise TypeError(
            f"names must be a list of names, got the str {names!r}; use sample_images([{names!r}]), "
            f"or helpers.data.sample_image({names!r}) for the one array"
        )
    if not isinstance(names, (list, tuple)):
        raise TypeError(f"names must be a list or tuple of str, got {type(names).__name__}")
    if len(names) == 0:
        raise ValueError(
            f"names is empty; pass None for all seven, or some of: {', '.join(SAMPLE_IMAGE_NAMES)}"
        )
    repeated = sorted({name for name in names if list(names).count(name) > 1}, key=str)
    if repeated:
        raise ValueError(f"names lists {', '.join(map(repr, repeated))} more than once; the result "
                         "is a dict, one entry a name, so each name may appear once")
    return {name: sample_image(name) for name in names}
