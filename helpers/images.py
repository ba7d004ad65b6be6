"""What may be passed as "images": the form of the argument, checked once for every function.

Introduced in notebook 01 (the classifier) and used by the CAM functions of notebook 03.
:func:`load_image` and :func:`load_images` (notebook 03) read your own photos into that form.

:func:`as_images` looks only at the *form* of what was passed (which container, which dimensions,
which element type), never at the values: a classifier checks the RGB 0..255 range on top of it
(:func:`helpers.models.to_rgb_batch`), while a bare Keras model takes already preprocessed inputs
in any range.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["IMAGE_SUFFIXES", "as_images", "load_image", "load_images"]

#: File name endings :func:`load_images` reads from a folder (case-insensitive); other files are
#: skipped. :func:`load_image` reads any format Pillow opens, whatever the name.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

#: numpy dtype kinds accepted as pixel values: unsigned and signed integers, floating point.
NUMERIC_KINDS = "uif"


def _refuse_path(value: Any, where: str) -> None:
    if isinstance(value, (str, bytes, os.PathLike)):
        raise TypeError(
            f"{where} is a {type(value).__name__} ({str(value)[:80]!r}), not pixels; read the file "
            "first (e.g. skimage.io.imread(path)) and pass the array, or pass "
            "helpers.sample_image(name) for a sample photo"
        )


def _asarray(value: Any, where: str) -> np.ndarray:
    try:
        return np.asarray(value)
    except ValueError as error:  # numpy refuses ragged nested lists
        raise TypeError(
            f"{where} is a {type(value).__name__} that is not one array (ragged or mixed "
            f"elements: {error}); pass numeric arrays"
        ) from None


def _numeric(array: np.ndarray, where: str) -> np.ndarray:
    if array.dtype.kind not in NUMERIC_KINDS:
        detail = " (ragged or mixed elements)" if array.dtype == object else ""
        raise TypeError(
            f"{where} has dtype {array.dtype}{detail}; images must hold numbers: an unsigned or "
            "signed integer or a floating-point dtype (e.g. uint8 or float32)"
        )
    return array


def _one_image(value: Any, where: str) -> np.ndarray:
    _refuse_path(value, where)
    if value is None:
        raise TypeError(f"{where} is None; expected an image array (H, W, C)")
    array = _numeric(_asarray(value, where), where)
    if array.ndim != 3:
        hint = ""
        if array.ndim == 2:
            hint = " (a grayscale image? add a channel axis, e.g. image[..., None])"
        elif array.ndim == 4:
            hint = " (a batch? pass the batch array itself, not inside a list)"
        raise ValueError(
            f"{where} has shape {array.shape}; each image of a list must be (H, W, C){hint}"
        )
    if min(array.shape) < 1:
        raise ValueError(f"{where} is empty: shape {array.shape}; expected (H, W, C) with H, W, C >= 1")
    return array


def as_images(images: Any) -> list[np.ndarray] | np.ndarray:
    """Accept the forms in which images may be passed; return arrays, values untouched.

    Parameters
    ----------
    images
        One of:

        * an array ``(B, H, W, C)``: a batch, returned as is (as a numpy array);
        * an array ``(H, W, C)``: one image, returned as a batch ``(1, H, W, C)``;
        * a list or tuple of arrays ``(H, W, C)`` (sizes may differ): returned as a list;
        * a dict (e.g. :func:`helpers.sample_images`): **its values, in the dict's order**, as a
          list; the keys are ignored;
        * any other iterable that is not an array (a generator, an iterator, ``dict.values()``):
          read once into a list.

        Arrays may be numpy arrays or anything ``numpy.asarray`` converts (a Keras or TensorFlow
        tensor, nested lists of numbers for one array).

    Returns
    -------
    numpy.ndarray or list[numpy.ndarray]
        ``(B, H, W, C)`` for array input, else a list of ``(H, W, C)`` arrays. Dtypes are kept (no
        copy where none is needed); **no value or range is checked** and nothing is rescaled.

    Raises
    ------
    TypeError
        ``images`` (or an element) is a path or string (read the file first), ``None``, not
        iterable, or holds non-numbers (a bool, complex, object or string dtype).
    ValueError
        An empty container, a batch of zero images, an image with a zero-sized axis, or an array
        whose number of dimensions is not that of an image or a batch.
    """
    _refuse_path(images, "images")
    if images is None:
        raise TypeError("images is None; expected an image (H, W, C), a batch (B, H, W, C) or a list")
    if isinstance(images, Mapping):
        values, form = list(images.values()), f"a dict with keys {list(images)[:5]!r}"
    elif isinstance(images, (list, tuple)):
        values, form = list(images), f"an empty {type(images).__name__}"
    elif isinstance(images, Iterable) and not hasattr(images, "__array__") and not hasattr(
        images, "shape"
    ):
        values, form = list(images), f"a {type(images).__name__} that yielded nothing"
    else:
        array = _asarray(images, "images")
        if array.ndim == 0:
            raise TypeError(
                f"images is a {type(images).__name__} ({images!r:.80}); expected an image "
                "(H, W, C), a batch (B, H, W, C) or a list of (H, W, C) arrays"
            )
        array = _numeric(array, "images")
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4:
            hint = " (a grayscale image? add a channel axis, e.g. image[..., None])" if array.ndim == 2 else ""
            raise ValueError(
                f"images have shape {array.shape}; expected one image (H, W, C), a batch "
                f"(B, H, W, C) or a list of (H, W, C) arrays{hint}"
            )
        if array.shape[0] == 0:
            raise ValueError(f"got a batch of zero images: shape {array.shape}; pass at least one")
        if min(array.shape[1:]) < 1:
            raise ValueError(f"the images are empty: batch shape {array.shape}; H, W and C must be >= 1")
        return array
    if not values:
        if isinstance(images, Mapping):
            form = "an empty dict"
        raise ValueError(f"got {form}; pass at least one image (H, W, C)")
    return [_one_image(value, f"image {index}") for index, value in enumerate(values)]


# -- reading photos (Pillow) --------------------------------------------------------------------


def _describe(source: Any) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"the uploaded bytes ({len(source):,} bytes)"
    return f"{os.fspath(source)!r}"


def _to_rgb_uint8(picture: Any) -> np.ndarray:
    """A Pillow image (EXIF orientation already applied) as RGB uint8 ``(H, W, 3)``."""
    from PIL import Image

    mode = picture.mode
    if mode.startswith("I") or mode == "F":
        # 16-bit grayscale ("I;16", or "I" in older Pillow): 0..65535 scaled to 0..255, not
        # clipped. A 32-bit integer or float image is scaled by its own maximum.
        values = np.asarray(picture, dtype=np.float64)
        top = float(values.max(initial=0.0))
        scale = 65535.0 if (mode.startswith("I;16") or top <= 65535.0) and mode != "F" else max(top, 1.0)
        gray = np.clip(np.rint(values / scale * 255.0), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=-1))
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in picture.info):
        # Transparent pixels are shown on white, as a browser shows them.
        rgba = picture.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        picture = Image.alpha_composite(background, rgba)
    array = np.asarray(picture.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(array)


def load_image(source: str | os.PathLike | bytes) -> np.ndarray:
    """Read one photo as RGB ``uint8`` ``(H, W, 3)``, the form :func:`helpers.sample_images` gives.

    Introduced in notebook 03 ("Your own photo"). Pillow decodes the file; the EXIF orientation a
    phone records is applied (the photo comes out the way up it is shown); grayscale, palette,
    CMYK and 16-bit images become RGB (16-bit values are scaled from 0..65535 to 0..255);
    transparent pixels (RGBA, LA, palette with transparency) are composited on white.

    Parameters
    ----------
    source
        A path (``str`` or ``pathlib.Path``), or the bytes of a file (e.g. an upload's content).

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` ``uint8``.

    Raises
    ------
    FileNotFoundError
        The path does not exist (the message names it).
    IsADirectoryError
        The path is a folder: use :func:`load_images`.
    ValueError
        The file or bytes are not an image Pillow can read (the message names the file).
    TypeError
        ``source`` is neither a path nor bytes.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if isinstance(source, (bytes, bytearray, memoryview)):
        opened: Any = io.BytesIO(bytes(source))
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"no such image file: {_describe(source)}")
        if path.is_dir():
            raise IsADirectoryError(
                f"{_describe(source)} is a folder; use helpers.load_images(folder) for every image in it"
            )
        opened = path
    else:
        raise TypeError(
            f"source must be a path (str or pathlib.Path) or the bytes of an image file, got "
            f"{type(source).__name__}"
        )
    try:
        with Image.open(opened) as picture:
            picture.load()
            picture = ImageOps.exif_transpose(picture)
            return _to_rgb_uint8(picture)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ValueError(
            f"cannot read {_describe(source)} as an image ({type(error).__name__}: {error}); "
            f"expected a photo Pillow can open, e.g. JPEG or PNG"
        ) from None


def load_images(source: str | os.PathLike | Iterable[str | os.PathLike]) -> dict[str, np.ndarray]:
    """Read several photos: ``{file stem: RGB uint8 (H, W, 3)}``, as :func:`helpers.sample_images`.

    Introduced in notebook 03. Classifiers and CAM functions take the dict itself.

    Parameters
    ----------
    source
        A folder (its image files, by name ending :data:`IMAGE_SUFFIXES`, in name order; other
        files and sub-folders are skipped), or a list of paths (in the list's order; each must be
        an image).

    Returns
    -------
    dict[str, numpy.ndarray]
        Keyed by file name without its ending; a repeated stem gets its ending too
        (``"cat.png"`` beside ``"cat"``).

    Raises
    ------
    FileNotFoundError
        The folder, or a listed file, does not exist.
    ValueError
        The folder holds no image file, the list is empty, or a file cannot be read (the message
        names it).
    TypeError
        ``source`` is not a path or a list of paths.
    """
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        if not folder.exists():
            raise FileNotFoundError(f"no such folder or file: {_describe(source)}")
        if not folder.is_dir():
            return {folder.stem: load_image(folder)}
        paths = sorted(
            (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
            key=lambda p: p.name,
        )
        if not paths:
            raise ValueError(
                f"the folder {_describe(source)} holds no image files (looked for "
                f"{', '.join(IMAGE_SUFFIXES)})"
            )
    elif isinstance(source, (bytes, bytearray, memoryview)):
        raise TypeError("load_images takes a folder or a list of paths; for bytes use load_image")
    elif isinstance(source, Iterable):
        paths = [Path(p) if isinstance(p, (str, os.PathLike)) else p for p in source]
        bad = [p for p in paths if not isinstance(p, Path)]
        if bad:
            raise TypeError(f"a list of paths was expected; got a {type(bad[0]).__name__} in it")
        if not paths:
            raise ValueError("got an empty list of paths; pass at least one image file")
    else:
        raise TypeError(
            f"source must be a folder or a list of paths, got {type(source).__name__}"
        )
    images: dict[str, np.ndarray] = {}
    for path in paths:
        key = path.stem if path.stem not in images else path.name
        images[key] = load_image(path)
    return images
