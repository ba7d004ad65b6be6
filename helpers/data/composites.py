"""Photo composites: real objects pasted onto real photos, with true boxes (no download needed).

Introduced in notebook 05.

Every class is one object cut from a photo that ships inside scikit-image or scikit-learn (the
cat's face from ``chelsea``, the cup from ``coffee``, ...; :data:`OBJECT_CROPS`). A composite is a
random square crop of another photo (the background), resized to ``size × size``, with one object
pasted on it at a random scale and place, sometimes mirrored. The object is pasted as the
rectangle it was cut as, so its **true box is exactly the pasted rectangle**.

The two splits use **different background photos** (:data:`BACKGROUNDS`) and independent random
streams, so no test composite shares a background photo, a placement or a scale draw with a
training composite. The objects themselves are the same in both splits: each class is one object
photographed once, so a test set built here measures new places, scales and surroundings, not
new instances of the class (for that, use photos of your own, notebook 05 section 7).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from helpers.checks import ArgumentError, array_bytes, integer, number, subset_indices
from helpers.data.samples import sample_image
from helpers.images import resize_image

__all__ = [
    "OBJECT_CROPS",
    "BACKGROUNDS",
    "PHOTO_SOURCES",
    "PhotoComposites",
    "make_photo_composites",
    "object_crop",
]

#: class name -> (photo, inclusive box ``(x0, y0, x1, y1)`` of the object in that photo's pixels).
#: Names sort alphabetically, so their order is also the order in which
#: ``keras.utils.image_dataset_from_directory`` numbers the folders written by
#: :meth:`PhotoComposites.save_to_folder`.
OBJECT_CROPS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "cat": ("chelsea", (60, 10, 340, 290)),
    "coffee_cup": ("coffee", (50, 30, 530, 380)),
    "flower": ("flower", (140, 50, 430, 340)),
    "motorcycle": ("motorcycle", (50, 150, 660, 460)),
    "rocket": ("rocket", (270, 110, 380, 420)),
}
#: split -> background photos; the two lists share no photo, and none shows one of the objects.
BACKGROUNDS: dict[str, tuple[str, ...]] = {
    "train": ("china", "astronaut", "hubble_deep_field", "grass", "brick", "camera"),
    "test": ("immunohistochemistry", "retina", "gravel", "coins", "clock"),
}
#: photo -> (where it ships, source and license), for the photos that
#: :data:`helpers.data.SAMPLE_IMAGE_SOURCES` does not list.
PHOTO_SOURCES: dict[str, tuple[str, str]] = {
    "hubble_deep_field": ("scikit-image", "Hubble eXtreme Deep Field, NASA; public domain"),
    "grass": ("scikit-image", "Grass, by linolafett on DeviantArt; CC0 (grayscale)"),
    "brick": ("scikit-image", "Brick wall, CC0Textures Bricks25; CC0 (grayscale)"),
    "camera": ("scikit-image", "Camera man, by Lav Varshney; CC0 (grayscale)"),
    "immunohistochemistry": ("scikit-image", "IHC staining, CMMI; no known copyright restrictions"),
    "retina": ("scikit-image", "Fundus photograph, Mikael Häggström (Wikimedia); CC0"),
    "gravel": ("scikit-image", "Gravel, CC0Textures Gravel04; CC0 (grayscale)"),
    "coins": ("scikit-image", "Greek coins from Pompeii, Brooklyn Museum; no known copyright "
              "restrictions (grayscale)"),
    "clock": ("scikit-image", "Motion-blurred clock, by Stefan van der Walt; public domain "
              "(grayscale)"),
}
#: Shorter side, in pixels, to which background photos are reduced once (crops are taken there).
BACKGROUND_SIDE = 320
#: A background crop is a square whose side is this range of fractions of the photo's shorter side.
BACKGROUND_CROP = (0.5, 1.0)
#: Probability that an object is pasted mirrored left-right.
FLIP_PROBABILITY = 0.5

_SPLITS = ("train", "test")


@dataclass(frozen=True, eq=False)
class PhotoComposites:
    """A set of photos, each with one pasted object, its class and its true box.

    Introduced in notebook 05; made by :func:`make_photo_composites`.

    Attributes
    ----------
    images
        ``(N, S, S, 3)`` uint8 RGB, 0..255: what :func:`helpers.load_classifier`'s classifiers
        and :func:`helpers.build_transfer_model`'s models take.
    labels
        ``(N,)`` int64 index into :attr:`class_names`.
    boxes
        ``(N, 4)`` int64 ``(x0, y0, x1, y1)``, *inclusive* pixel coordinates (x = column,
        y = row) of the pasted object: every pixel inside comes from the object, every pixel
        outside from the background. Width is ``x1 - x0 + 1``.
    class_names
        The class of each label, e.g. ``("cat", "coffee_cup", ...)``.
    backgrounds
        ``(N,)`` int64 index into :attr:`background_names`: the photo each background was cut from.
    background_names
        The background photos of the split, e.g. ``("china", "astronaut", ...)``.
    flipped
        ``(N,)`` bool: whether the object was pasted mirrored left-right.
    """

    images: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    class_names: tuple[str, ...]
    backgrounds: np.ndarray
    background_names: tuple[str, ...]
    flipped: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_size(self) -> int:
        """Side ``S`` of the square images, in pixels."""
        return int(self.images.shape[1])

    def subset(self, indices: np.ndarray | slice) -> PhotoComposites:
        """The composites at ``indices`` (an index array, boolean mask or slice), as a new set.
        One index gives a set of one
        (not a bare image, which would lose its batch axis)."""
        indices = subset_indices(indices, len(self.labels))
        return PhotoComposites(
            images=self.images[indices],
            labels=self.labels[indices],
            boxes=self.boxes[indices],
            class_names=self.class_names,
            backgrounds=self.backgrounds[indices],
            background_names=self.background_names,
            flipped=self.flipped[indices],
        )

    def save_to_folder(self, directory: str | Path) -> Path:
        """Write the images as ``directory/<class name>/<index>.png``, one sub-folder per class.

        The layout ``keras.utils.image_dataset_from_directory`` reads (notebook 05, section 7).
        PNG is lossless, so reading a file back gives the same pixels. Sub-folders are created for
        every class, also for a class with no image here. The folder must be new or empty: files
        already there would be read as part of this data set (another set's images, even under
        another class).

        Raises
        ------
        ValueError
            ``directory`` is a file, or a folder that already holds something.

        Returns
        -------
        pathlib.Path
            ``directory``.
        """
        import skimage.io

        if not isinstance(directory, (str, Path)):
            raise TypeError(f"directory must be a str or Path, got {type(directory).__name__}")
        root = Path(directory)
        if root.exists() and not root.is_dir():
            raise ValueError(f"directory {str(root)!r} is a file; pass a new or empty folder")
        if root.is_dir() and any(root.iterdir()):
            held = sorted(path.name for path in root.iterdir())
            raise ValueError(
                f"directory {str(root)!r} is not empty (it holds {', '.join(held[:5])}"
                f"{', ...' if len(held) > 5 else ''}): its files would be read as part of this "
                "data set. Pass a new or empty folder, or remove it first (shutil.rmtree)")
        for name in self.class_names:
            (root / name).mkdir(parents=True, exist_ok=True)
        width = max(4, len(str(len(self) - 1)))
        for index, (image, label) in enumerate(zip(self.images, self.labels)):
            path = root / self.class_names[int(label)] / f"{index:0{width}d}.png"
            skimage.io.imsave(path, image, check_contrast=False)
        return root


def _load_photo(name: str) -> np.ndarray:
    """One photo as RGB uint8: the seven sample photos, or a scikit-image one (gray → RGB)."""
    try:
        return sample_image(name)
    except ValueError:
        pass
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)())
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return np.ascontiguousarray(image[..., :3].astype(np.uint8))


@functools.cache
def object_crop(name: str) -> np.ndarray:
    """The object of class ``name`` as cut from its photo: RGB uint8 ``(h, w, 3)``, read-only.

    Introduced in notebook 05. ``name`` is one of :data:`OBJECT_CROPS`.
    """
    if name not in OBJECT_CROPS:
        raise ValueError(f"unknown object {name!r}; available: {', '.join(OBJECT_CROPS)}")
    photo, (x0, y0, x1, y1) = OBJECT_CROPS[name]
    crop = np.ascontiguousarray(_load_photo(photo)[y0 : y1 + 1, x0 : x1 + 1])
    crop.setflags(write=False)
    return crop


@functools.cache
def _background_photo(name: str) -> np.ndarray:
    """A background photo reduced once so that its shorter side is :data:`BACKGROUND_SIDE`."""
    photo = _load_photo(name)
    height, width = photo.shape[:2]
    scale = BACKGROUND_SIDE / min(height, width)
    if scale < 1.0:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        photo = np.round(resize_image(photo, size)).astype(np.uint8)
    photo.setflags(write=False)
    return photo


def _check_classes(classes: Sequence[str] | None) -> tuple[str, ...]:
    if classes is None:
        return tuple(OBJECT_CROPS)
    if isinstance(classes, (str, bytes)) or not isinstance(classes, (list, tuple)):
        raise TypeError(
            f"classes must be a list or tuple of names, got {type(classes).__name__} "
            f"{classes!r:.80}; available: {', '.join(OBJECT_CROPS)}"
        )
    names = tuple(classes)
    unknown = [name for name in names if name not in OBJECT_CROPS]
    if unknown or len(names) < 2 or len(set(names)) != len(names):
        raise ValueError(
            f"classes must be at least two different names from {', '.join(OBJECT_CROPS)}; "
            f"got {list(names)}" + (f" ({unknown} unknown)" if unknown else "")
        )
    return names


def _check_scale(scale: object) -> tuple[float, float]:
    if not isinstance(scale, (tuple, list)) or len(scale) != 2:
        raise ArgumentError(f"object_scale must be a pair of fractions (low, high), got {scale!r:.80}")
    low = number("object_scale[0] (low)", scale[0], 0.0, 1.0, low_open=True)
    high = number("object_scale[1] (high)", scale[1], low, 1.0)
    return low, high


def make_photo_composites(
    count: int,
    *,
    size: int = 224,
    classes: Sequence[str] | None = None,
    split: Literal["train", "test"] = "train",
    object_scale: tuple[float, float] = (0.3, 0.6),
    seed: int = 0,
) -> PhotoComposites:
    """Build ``count`` photos, each with one object pasted at a random place and scale.

    Introduced in notebook 05.

    Each composite gets a class (balanced: every class appears ``count // K`` or
    ``count // K + 1`` times, in random order), a background photo of the split (uniformly), a
    random square crop of it (side :data:`BACKGROUND_CROP` of the photo's shorter side) resized
    to ``size × size``, and the class's object (:func:`object_crop`), resized so that its longer
    side is a uniform fraction ``object_scale`` of ``size`` (aspect ratio kept), mirrored with
    probability :data:`FLIP_PROBABILITY`, and pasted (replacing the pixels) with a uniform
    top-left corner so that it lies wholly inside. Resizing is bilinear with antialiasing
    (:func:`helpers.models.resize_image`). Deterministic given the arguments: the random
    generator is seeded with ``(seed, split)``, so the two splits never share a random stream.

    Parameters
    ----------
    count
        Number of composites, >= 1.
    size
        Side ``S`` of the square images in pixels, >= 32 (224 for EfficientNet-Lite0).
    classes
        Names from :data:`OBJECT_CROPS`, at least two; labels index this order. Default: all five,
        ``("cat", "coffee_cup", "flower", "motorcycle", "rocket")``.
    split
        ``"train"`` or ``"test"``: which background photos (:data:`BACKGROUNDS`) and which
        random stream.
    object_scale
        ``(low, high)``, fractions of ``size`` in (0, 1]: the range of the object's longer side.
    seed
        A non-negative int.

    Returns
    -------
    PhotoComposites
        ``images (N, S, S, 3)`` uint8, ``labels (N,)``, ``boxes (N, 4)`` inclusive
        ``(x0, y0, x1, y1)`` of the pasted object, ``class_names``, ``backgrounds``,
        ``background_names``, ``flipped``.

    Raises
    ------
    TypeError, ValueError
        For an argument of the wrong type or out of range, saying what was given and what is
        accepted.
    """
    count = integer("count", count, 1)
    size = integer("size", size, 32)
    names = _check_classes(classes)
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    low, high = _check_scale(object_scale)
    seed = integer("seed", seed, 0)
    array_bytes(f"make_photo_composites({count}, size={size})", (count, size, size, 3), 1)

    rng = np.random.default_rng([int(seed), _SPLITS.index(split)])
    background_names = BACKGROUNDS[split]
    labels = rng.permutation(np.arange(count) % len(names)).astype(np.int64)
    backgrounds = rng.integers(0, len(background_names), size=count).astype(np.int64)
    crop_fractions = rng.uniform(*BACKGROUND_CROP, size=count)
    crop_corners = rng.random((count, 2))
    object_sides = rng.uniform(low, high, size=count)
    flipped = rng.random(count) < FLIP_PROBABILITY
    paste_corners = rng.random((count, 2))

    images = np.empty((count, size, size, 3), dtype=np.uint8)
    boxes = np.empty((count, 4), dtype=np.int64)
    for i in range(count):
        photo = _background_photo(background_names[backgrounds[i]])
        height, width = photo.shape[:2]
        side = max(1, int(round(crop_fractions[i] * min(height, width))))
        top = int(crop_corners[i, 0] * (height - side + 1))
        left = int(crop_corners[i, 1] * (width - side + 1))
        background = photo[top : top + side, left : left + side]
        images[i] = np.round(resize_image(background, (size, size))).astype(np.uint8)

        piece = object_crop(names[labels[i]])
        longer = max(2, int(round(object_sides[i] * size)))
        scale = longer / max(piece.shape[:2])
        piece_height = min(size, max(2, int(round(piece.shape[0] * scale))))
        piece_width = min(size, max(2, int(round(piece.shape[1] * scale))))
        resized = np.round(resize_image(piece, (piece_height, piece_width))).astype(np.uint8)
        if flipped[i]:
            resized = resized[:, ::-1]
        y0 = int(paste_corners[i, 0] * (size - piece_height + 1))
        x0 = int(paste_corners[i, 1] * (size - piece_width + 1))
        images[i, y0 : y0 + piece_height, x0 : x0 + piece_width] = resized
        boxes[i] = (x0, y0, x0 + piece_width - 1, y0 + piece_height - 1)

    return PhotoComposites(
        images=images,
        labels=labels,
        boxes=boxes,
        class_names=names,
        backgrounds=backgrounds,
        background_names=background_names,
        flipped=flipped,
    )
