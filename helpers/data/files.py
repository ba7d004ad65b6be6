"""Reading your own photos: files or uploaded bytes to RGB ``uint8`` arrays.

Introduced in notebook 03 ("Your own photo"). Pillow decodes; the result has the form that
:func:`helpers.sample_images` gives and that every function taking ``images`` accepts.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["IMAGE_SUFFIXES", "MAX_IMAGE_PIXELS", "load_image", "load_images", "unique_name"]

#: File name endings :func:`load_images` reads from a folder (case-insensitive); other files are
#: skipped. :func:`load_image` reads any format Pillow opens, whatever the name.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


#: The most pixels :func:`load_image` decodes (a 24-megapixel camera's 6000 × 4000), checked from
#: the file's header before any pixel is decoded: a small file can declare a huge image (a
#: "decompression bomb"), and decoding costs up to 12 bytes per pixel. Pillow's own limit is
#: 89 million. A larger JPEG is decoded at 1/2, 1/4 or 1/8 of its size instead (JPEG can do this
#: without decoding the whole), since every network here sees a few hundred pixels a side.
MAX_IMAGE_PIXELS = 24_000_000


def unique_name(name: str, taken: Iterable[str]) -> str:
    """``name``, or ``"name (2)"``, ``"name (3)"``, ...: the first not in ``taken``."""
    taken = set(taken)
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        candidate = f"{name} ({number})"
    return candidate


def _path(source: str | os.PathLike) -> Path:
    """``source`` as a Path; an empty name is refused (``Path("")`` would be the current folder)."""
    if not os.fspath(source).strip():
        raise ValueError(f"got an empty path ({os.fspath(source)!r}); pass a file or folder name")
    return Path(source)


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
        values = np.asarray(picture, dtype=np.float32)
        if not np.all(np.isfinite(values)):  # a scale of NaN would make every pixel black
            raise _Refused("holds NaN or infinite values (a float image); it is not a photo: "
                           "replace them (e.g. numpy.nan_to_num) and pass the array")
        if values.size and float(values.min()) < 0:  # would be clipped to black
            raise _Refused(f"holds negative values (down to {float(values.min()):g}); a "
                           "grayscale photo is 0..max: rescale it to 0..255, e.g. (a - a.min()) "
                           "/ (a.max() - a.min()) * 255, and pass the array")
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

    At most :data:`MAX_IMAGE_PIXELS` pixels are decoded, checked before decoding: a larger JPEG
    is decoded at 1/2, 1/4 or 1/8 of its size (what fits), any other larger image is refused.

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
        The file or bytes are not an image Pillow can read (the message names the file), or hold
        more pixels than :data:`MAX_IMAGE_PIXELS` (and are not a JPEG that fits at 1/8), or a
        32-bit (float or integer) image holds NaN, infinite or negative values.
    TypeError
        ``source`` is neither a path nor bytes.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if isinstance(source, (bytes, bytearray, memoryview)):
        opened: Any = io.BytesIO(bytes(source))
    elif isinstance(source, (str, os.PathLike)):
        path = _path(source)
        if not path.exists():
            raise FileNotFoundError(f"no such image file: {_describe(source)}")
        if path.is_dir():
            raise IsADirectoryError(
                f"{_describe(source)} is a folder; use helpers.load_images(folder) for every image in it"
            )
        if not path.is_file():  # a FIFO or a device would block the read for ever
            raise ValueError(f"{_describe(source)} is not a regular file (a pipe, socket or device); "
                             "pass an image file")
        opened = path
    else:
        raise TypeError(
            f"source must be a path (str or pathlib.Path) or the bytes of an image file, got "
            f"{type(source).__name__}"
        )
    try:
        with Image.open(opened) as picture:  # reads the header only
            _bound_pixels(picture, source)
            picture.load()
            picture = ImageOps.exif_transpose(picture)
            return _to_rgb_uint8(picture)
    except _TooLarge as error:
        raise ValueError(str(error)) from None
    except _Refused as error:
        raise ValueError(f"{_describe(source)} {error}") from None
    except Image.DecompressionBombError as error:  # Pillow refuses from the header, above 2x its limit
        raise ValueError(f"{_describe(source)} declares too many pixels ({error}); "
                         + _LIMIT_ADVICE.format(limit=MAX_IMAGE_PIXELS)) from None
    except MemoryError:
        raise
    except Exception as error:  # any decoder's failure: not a photo
        detail = ("not a format Pillow identifies" if isinstance(error, UnidentifiedImageError)
                  else f"{type(error).__name__}: {error}")  # (Pillow's own names a BytesIO)
        raise ValueError(
            f"cannot read {_describe(source)} as an image ({detail}); "
            f"expected a photo Pillow can open, e.g. JPEG or PNG"
        ) from None


class _TooLarge(Exception):
    pass


class _Refused(Exception):
    """Pixels that decode but are no photo (NaN, negative values); the message follows the
    file's name."""


def _bound_pixels(picture: Any, source: Any) -> None:
    """Refuse an image over :data:`MAX_IMAGE_PIXELS` before it is decoded, or have a JPEG decoded
    at the largest of 1/2, 1/4, 1/8 of its size that fits (Pillow's ``draft``)."""
    width, height = picture.size
    if width * height <= MAX_IMAGE_PIXELS:
        return
    if picture.format == "JPEG":
        for scale in (2, 4, 8):
            if -(-width // scale) * -(-height // scale) <= MAX_IMAGE_PIXELS:
                picture.draft("RGB", (-(-width // scale), -(-height // scale)))
                return
    raise _TooLarge(f"{_describe(source)} is {width} × {height} = {width * height:,} pixels; "
                    + _LIMIT_ADVICE.format(limit=MAX_IMAGE_PIXELS))


_LIMIT_ADVICE = ("load_image reads at most {limit:,} (helpers.data.files.MAX_IMAGE_PIXELS; a JPEG "
                 "up to 64 times that). Resize it first, e.g. "
                 "PIL.Image.open(path).reduce(4).save(smaller_path)")


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
        Keyed by file name without its ending. Names that repeat are told apart, never dropped:
        by their folder (``"cat/001"``, ``"dog/001"``, as a glob over one folder per class
        gives), else their ending (``"cat.png"`` beside ``"cat"``), else a number (``"cat (2)"``).

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
        folder = _path(source)
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
        paths = [_path(p) if isinstance(p, (str, os.PathLike)) else p for p in source]
        bad = [p for p in paths if not isinstance(p, Path)]
        if bad:
            raise TypeError(f"a list of paths was expected; got a {type(bad[0]).__name__} in it")
        if not paths:
            raise ValueError("got an empty list of paths; pass at least one image file")
    else:
        raise TypeError(
            f"source must be a folder or a list of paths, got {type(source).__name__}"
        )
    folders: dict[str, set[Path]] = {}  # stem → the folders it is found in (one pass)
    for path in paths:
        folders.setdefault(path.stem, set()).add(path.parent)
    images: dict[str, np.ndarray] = {}
    for path in paths:
        # One folder per class: "cat/001", "dog/001". The current folder (a bare "001.jpg")
        # is named by what it is called, never "/001".
        folder = path.parent.name or path.resolve().parent.name
        prefix = f"{folder}/" if len(folders[path.stem]) > 1 and folder else ""
        key = prefix + path.stem if prefix + path.stem not in images else prefix + path.name
        images[unique_name(key, images)] = load_image(path)
    return images
