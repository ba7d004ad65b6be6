"""Synthetic image sets built from scikit-learn's handwritten digits (no download needed).

Introduced in notebook 02, reused in notebook 04.

:func:`make_digit_canvases` scales the 8×8 digits of :func:`sklearn.datasets.load_digits` (1,797
images, shipped inside scikit-learn) and pastes one per canvas, at a random position or near the
centre, optionally on a cluttered background (fragments of other digits, Gaussian noise). Every
canvas comes with its label and the ground-truth box of the digit's ink, so the same sets serve
classification (notebook 02) and weakly-supervised localisation (notebook 04).

The source digits are split once, stratified by class and with a fixed seed, into a training pool
and a test pool (:func:`digit_source_split`): canvases built with ``split="test"`` only use images
that no ``split="train"`` canvas uses, whatever the ``seed`` of either call. scikit-learn's copy of
the digits carries no writer ids, so the two pools hold different images but possibly the same
writers.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import numpy as np

from helpers.checks import ArgumentError, array_bytes, integer, number, subset_indices

__all__ = [
    "DIGIT_SOURCE_SIZE",
    "INK_THRESHOLD",
    "DigitCanvases",
    "digit_source_split",
    "make_digit_canvases",
]

#: Side of scikit-learn's digit images, in pixels.
DIGIT_SOURCE_SIZE = 8
#: Default ink threshold: digit pixels at or below it (on the 0..1 scale) are set to background.
INK_THRESHOLD = 0.1
#: Seed of the fixed train/test split of the source digits (not the ``seed`` of a call).
SPLIT_SEED = 2016
#: Number of classes (digits 0..9).
NUM_DIGIT_CLASSES = 10

_POSITIONS = ("random", "center")
_SPLITS = ("train", "test", "all")


@dataclass(frozen=True, eq=False)
class DigitCanvases:
    """A set of canvases, each showing one scaled handwritten digit.

    Attributes
    ----------
    images
        ``(N, S, S, C)`` float32 in ``[0, 1]``: 0 is the background, 1 full ink; ``C`` is 1
        (grayscale) or 3 (the gray value repeated). The ImageNet classifiers of
        :func:`helpers.load_classifier` take 0..255: multiply by 255 before using them there.
    labels
        ``(N,)`` int64, the digit shown (0..9).
    boxes
        ``(N, 4)`` int64 ``(x0, y0, x1, y1)``, *inclusive* pixel coordinates (x = column,
        y = row) of the digit's tight ink extent: the smallest box holding every pixel of the pasted
        digit whose value exceeds ``ink_threshold`` (after scaling, before clutter and noise). The
        digit's pixels at or below the threshold are not drawn, so without clutter and noise every
        canvas pixel outside its box is exactly 0. Width is ``x1 - x0 + 1``.
    sources
        ``(N,)`` int64, index of the digit image in :func:`sklearn.datasets.load_digits`.
    digit_sizes
        ``(N,)`` int64, side in pixels of the square the 8×8 digit was scaled to.
    """

    images: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    sources: np.ndarray
    digit_sizes: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def canvas_size(self) -> int:
        """Side ``S`` of the square canvases, in pixels."""
        return int(self.images.shape[1])

    def subset(self, indices: np.ndarray | slice) -> DigitCanvases:
        """The canvases at ``indices`` (an index array, boolean mask or slice), as a new set. One
        index gives a set of one
        (not a bare image, which would lose its batch axis)."""
        indices = subset_indices(indices, len(self.labels))
        return DigitCanvases(
            images=self.images[indices],
            labels=self.labels[indices],
            boxes=self.boxes[indices],
            sources=self.sources[indices],
            digit_sizes=self.digit_sizes[indices],
        )


#: Distractor pieces scaled at once (the rest are drawn, not yet scaled).
_PIECES_AT_ONCE = 1024


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as float32 ``(1797, 8, 8)`` in [0, 1] and int64 labels (read once)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)
    images.setflags(write=False)
    labels = bunch.target.astype(np.int64)
    labels.setflags(write=False)
    return images, labels



@functools.lru_cache(maxsize=8)
def digit_source_split(test_fraction: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Split scikit-learn's 1,797 digit images into a training pool and a test pool.

    Introduced in notebook 02. Stratified by class, with a fixed seed (``SPLIT_SEED``), so the
    pools depend on ``test_fraction`` only.

    Parameters
    ----------
    test_fraction
        Share of each class's images that go to the test pool, in (0, 1).

    Returns
    -------
    train_indices, test_indices : np.ndarray
        Sorted int64 indices into :func:`sklearn.datasets.load_digits`, disjoint, together all
        1,797 images. Read-only.
    """
    test_fraction = number("test_fraction", test_fraction, 0.0, 1.0)
    if test_fraction in (0.0, 1.0):
        raise ValueError(f"test_fraction must be strictly between 0 and 1, got {test_fraction}")
    _, labels = _digits()
    rng = np.random.default_rng(SPLIT_SEED)
    train, test = [], []
    for digit in range(NUM_DIGIT_CLASSES):
        members = rng.permutation(np.flatnonzero(labels == digit))
        n_test = int(round(test_fraction * members.size))
        n_test = min(max(n_test, 1), members.size - 1)
        test.append(members[:n_test])
        train.append(members[n_test:])
    train_indices, test_indices = np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
    train_indices.setflags(write=False)
    test_indices.setflags(write=False)
    return train_indices, test_indices


@functools.lru_cache(maxsize=64)
def _bilinear_matrix(size: int) -> np.ndarray:
    """``(size, 8)`` matrix that resizes one axis of an 8-pixel image to ``size`` pixels
    (bilinear, pixel centres aligned as in skimage.transform.resize)."""
    source = DIGIT_SOURCE_SIZE
    coordinates = (np.arange(size) + 0.5) * (source / size) - 0.5
    coordinates = np.clip(coordinates, 0.0, source - 1.0)
    left = np.floor(coordinates).astype(np.int64)
    right = np.minimum(left + 1, source - 1)
    weight_right = coordinates - left
    matrix = np.zeros((size, source), dtype=np.float32)
    rows = np.arange(size)
    np.add.at(matrix, (rows, left), 1.0 - weight_right)
    np.add.at(matrix, (rows, right), weight_right)
    return matrix


def _scale_digits(
    images: np.ndarray, sizes: np.ndarray, ink_threshold: float
) -> tuple[list[np.ndarray], np.ndarray]:
    """Scale ``(M, 8, 8)`` digits to ``sizes[i]`` pixels each (bilinear) and set pixels at or below
    ``ink_threshold`` to 0.

    Returns
    -------
    digits : list of np.ndarray
        ``M`` float32 arrays ``(sizes[i], sizes[i])``.
    extents : np.ndarray
        ``(M, 4)`` int64 inclusive ``(x0, y0, x1, y1)`` of the remaining ink inside each square;
        ``-1`` for a digit with no ink left.
    """
    digits: list[np.ndarray] = [np.empty((0, 0), np.float32)] * len(sizes)
    extents = np.full((len(sizes), 4), -1, dtype=np.int64)
    for size in np.unique(sizes):  # one batched product per size
        members = np.flatnonzero(sizes == size)
        matrix = _bilinear_matrix(int(size))
        scaled = matrix @ images[members] @ matrix.T
        scaled[scaled <= ink_threshold] = 0.0
        rows, cols = scaled.any(axis=2), scaled.any(axis=1)
        inked = rows.any(axis=1)
        first_row, last_row = rows.argmax(axis=1), size - 1 - rows[:, ::-1].argmax(axis=1)
        first_col, last_col = cols.argmax(axis=1), size - 1 - cols[:, ::-1].argmax(axis=1)
        found = np.stack([first_col, first_row, last_col, last_row], axis=1)
        extents[members[inked]] = found[inked]
        for member, digit in zip(members, scaled):
            digits[member] = digit
    return digits, extents


def _size_range(digit_size: object, canvas_size: int) -> tuple[int, int]:
    pair = digit_size if isinstance(digit_size, (tuple, list)) else (digit_size, digit_size)
    if len(pair) != 2:
        raise ArgumentError(
            f"digit_size must be an integer or a pair of integers (low, high), got {digit_size!r}"
        )
    low, high = (integer("digit_size", v, DIGIT_SOURCE_SIZE, canvas_size) for v in pair)
    if low > high:
        raise ArgumentError(
            f"digit_size must satisfy {DIGIT_SOURCE_SIZE} <= low <= high <= canvas_size "
            f"({canvas_size}), got {digit_size!r}"
        )
    return low, high


def _pair(name: str, value: object) -> tuple[int, int]:
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return integer(f"{name}[0] (dy)", value[0]), integer(f"{name}[1] (dx)", value[1])
    raise ArgumentError(f"{name} must be a pair of integers (dy, dx), got {value!r:.80}")


def make_digit_canvases(
    n: int,
    *,
    canvas_size: int = 48,
    digit_size: int | tuple[int, int] = (16, 24),
    positions: Literal["random", "center"] = "random",
    jitter: int = 0,
    offset: tuple[int, int] = (0, 0),
    clutter: int = 0,
    noise: float = 0.0,
    channels: int = 1,
    split: Literal["train", "test", "all"] = "train",
    test_fraction: float = 0.3,
    ink_threshold: float = INK_THRESHOLD,
    seed: int = 0,
) -> DigitCanvases:
    """Build ``n`` canvases, each with one handwritten digit pasted on a dark background.

    Introduced in notebook 02 (translation experiment); notebook 04 reuses it for localisation.

    Each canvas gets a label (classes are balanced: every digit appears ``n // 10`` or
    ``n // 10 + 1`` times, in random order), a source image of that class from the chosen pool,
    a size drawn uniformly from ``digit_size`` and a position. The 8×8 digit is scaled to
    ``size × size`` (bilinear), its pixels at or below ``ink_threshold`` are set to 0, and it is
    drawn with a pixel-wise maximum, so it stays visible over clutter. Deterministic given the
    arguments (a :class:`numpy.random.Generator` seeded with ``seed``); thousands of canvases take
    well under a second.

    Parameters
    ----------
    n
        Number of canvases, >= 1.
    canvas_size
        Side ``S`` of the square canvases in pixels, >= 8.
    digit_size
        Side of the square the digit is scaled to: an int, or an inclusive range ``(low, high)``
        sampled uniformly per canvas; ``8 <= low <= high <= canvas_size``.
    positions
        ``"random"``: the digit's square lies anywhere inside the canvas (uniform top-left corner).
        ``"center"``: the square is centred, then moved by ``offset`` plus a uniform random
        ``jitter`` in each direction.
    jitter
        Maximum random shift (pixels, each axis) around the centre; ``"center"`` only.
    offset
        ``(dy, dx)`` shift in pixels of the centred square (down and right are positive);
        ``"center"`` only. Used to test on shifted digits.
    clutter
        Number of distractors per canvas: each is a random square crop (half the digit's side)
        of another scaled digit from the same pool, drawn anywhere on the canvas *before* the
        digit (distractors may overlap the digit; they never change its box).
    noise
        Standard deviation of Gaussian noise added last; the result is clipped to [0, 1].
    channels
        1 for ``(N, S, S, 1)`` grayscale, 3 for the gray value repeated in RGB ``(N, S, S, 3)``.
    split
        Source pool: ``"train"`` or ``"test"`` (disjoint, see :func:`digit_source_split`), or
        ``"all"`` 1,797 images.
    test_fraction
        Share of the images held out for the test pool.
    ink_threshold
        Value in [0, 1) at or below which a scaled digit pixel counts as background.
    seed
        Seed of the random generator: a non-negative int.

    Returns
    -------
    DigitCanvases
        ``images (N, S, S, C)`` float32 in [0, 1], ``labels (N,)``, ``boxes (N, 4)`` inclusive
        ``(x0, y0, x1, y1)`` of the ink, ``sources (N,)``, ``digit_sizes (N,)``.

    Raises
    ------
    TypeError, ValueError
        For an argument of the wrong type or out of range, saying what was given and what is
        accepted; for example an ``offset`` that would push the digit off the canvas.
    """
    n = integer("n", n, 1)
    canvas_size = integer("canvas_size", canvas_size, DIGIT_SOURCE_SIZE)
    low, high = _size_range(digit_size, canvas_size)
    if positions not in _POSITIONS:
        raise ValueError(f"positions must be one of {_POSITIONS}, got {positions!r}")
    jitter = integer("jitter", jitter, 0)
    dy, dx = _pair("offset", offset)
    if positions == "random" and (jitter or dy or dx):
        raise ValueError(
            f"jitter and offset apply to positions='center' only; got positions='random' with "
            f"jitter={jitter}, offset={(dy, dx)}"
        )
    clutter = integer("clutter", clutter, 0)
    noise = number("noise", noise, 0.0, 1.0)
    if integer("channels", channels, 1, 3) == 2:
        raise ArgumentError(f"channels must be 1 or 3, got {channels!r}")
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    ink_threshold = number("ink_threshold", ink_threshold, 0.0, 1.0, high_open=True)
    seed = integer("seed", seed, 0)
    array_bytes(f"make_digit_canvases({n}, canvas_size={canvas_size})",
                (n, canvas_size, canvas_size, channels), 4)

    if positions == "center":
        # Every square must fit: check the largest size at the extreme shifts.
        for size in (low, high):
            start = (canvas_size - size) // 2
            for shift in (dy - jitter, dy + jitter, dx - jitter, dx + jitter):
                if not 0 <= start + shift <= canvas_size - size:
                    raise ValueError(
                        f"offset={(dy, dx)} with jitter={jitter} moves a {size}-pixel digit off "
                        f"the {canvas_size}-pixel canvas; each of |dy|, |dx| plus jitter may be at "
                        f"most {(canvas_size - high) // 2} for digit_size={digit_size!r}"
                    )

    images, all_labels = _digits()
    train_pool, test_pool = digit_source_split(test_fraction)
    pool = {"train": train_pool, "test": test_pool, "all": np.arange(len(all_labels))}[split]
    pool_labels = all_labels[pool]

    rng = np.random.default_rng(int(seed))
    labels = rng.permutation(np.arange(n) % NUM_DIGIT_CLASSES).astype(np.int64)
    sources = np.empty(n, dtype=np.int64)
    for digit in range(NUM_DIGIT_CLASSES):
        wanted = np.flatnonzero(labels == digit)
        candidates = pool[pool_labels == digit]
        sources[wanted] = candidates[rng.integers(0, candidates.size, size=wanted.size)]
    sizes = rng.integers(low, high + 1, size=n)
    if positions == "random":
        tops = (rng.random(n) * (canvas_size - sizes + 1)).astype(np.int64)
        lefts = (rng.random(n) * (canvas_size - sizes + 1)).astype(np.int64)
    else:
        starts = (canvas_size - sizes) // 2
        tops = starts + dy + rng.integers(-jitter, jitter + 1, size=n)
        lefts = starts + dx + rng.integers(-jitter, jitter + 1, size=n)

    canvases = np.zeros((n, canvas_size, canvas_size), dtype=np.float32)

    if clutter:
        count = n * clutter
        # Each distractor is a scaled digit of up to high x high floats: bounded as the canvases.
        array_bytes(f"make_digit_canvases({n}, clutter={clutter})'s {count:,} distractor pieces",
                    (count, high, high), 4)
        owner = np.repeat(np.arange(n), clutter)
        fragment_sources = pool[rng.integers(0, pool.size, size=count)]
        fragment_sizes = rng.integers(low, high + 1, size=count)
        crops = np.maximum(fragment_sizes // 2, 2)
        crop_tops = (rng.random(count) * (fragment_sizes - crops + 1)).astype(np.int64)
        crop_lefts = (rng.random(count) * (fragment_sizes - crops + 1)).astype(np.int64)
        paste_tops = (rng.random(count) * (canvas_size - crops + 1)).astype(np.int64)
        paste_lefts = (rng.random(count) * (canvas_size - crops + 1)).astype(np.int64)
        for start in range(0, count, _PIECES_AT_ONCE):  # scaled a batch at a time, then pasted
            part = slice(start, start + _PIECES_AT_ONCE)
            pieces, _ = _scale_digits(images[fragment_sources[part]], fragment_sizes[part],
                                      ink_threshold)
            for i, whole in enumerate(pieces, start):
                c, t, l = crops[i], paste_tops[i], paste_lefts[i]
                piece = whole[crop_tops[i] : crop_tops[i] + c, crop_lefts[i] : crop_lefts[i] + c]
                region = canvases[owner[i], t : t + c, l : l + c]
                np.maximum(region, piece, out=region)

    digits, extents = _scale_digits(images[sources], sizes, ink_threshold)
    if np.any(extents[:, 0] < 0):  # only with a high ink_threshold
        empty = sources[extents[:, 0] < 0]
        raise ValueError(
            f"digit images {empty[:5].tolist()} have no pixel above ink_threshold={ink_threshold}; "
            "use a lower threshold"
        )
    for i in range(n):
        t, l, s = tops[i], lefts[i], sizes[i]
        region = canvases[i, t : t + s, l : l + s]
        np.maximum(region, digits[i], out=region)
    boxes = extents + np.stack([lefts, tops, lefts, tops], axis=1)

    if noise:
        canvases += np.float32(noise) * rng.standard_normal(canvases.shape, dtype=np.float32)
        np.clip(canvases, 0.0, 1.0, out=canvases)

    images_out = canvases[..., None]
    if channels == 3:
        images_out = np.repeat(images_out, 3, axis=-1)
    return DigitCanvases(
        images=images_out,
        labels=labels,
        boxes=boxes,
        sources=sources,
        digit_sizes=sizes.astype(np.int64),
    )
