"""The digit-canvas builder (helpers.synthetic): determinism, shapes, boxes, splits, errors."""

from __future__ import annotations


import numpy as np
import pytest

from helpers.data import digits as synthetic
from helpers.data.digits import DigitCanvases, digit_source_split, make_digit_canvases


def _digit_labels() -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().target


def test_shapes_dtypes_and_ranges():
    data = make_digit_canvases(120, canvas_size=40, digit_size=(12, 20), seed=0)
    assert isinstance(data, DigitCanvases) and len(data) == 120 and data.canvas_size == 40
    assert data.images.shape == (120, 40, 40, 1) and data.images.dtype == np.float32
    assert data.labels.shape == (120,) and data.labels.dtype == np.int64
    assert data.boxes.shape == (120, 4) and data.boxes.dtype == np.int64
    assert data.sources.shape == data.digit_sizes.shape == (120,)
    assert data.images.min() == 0.0 and data.images.max() <= 1.0
    assert data.images.max() > 0.9  # full ink is there
    assert set(np.unique(data.digit_sizes)) <= set(range(12, 21))
    assert len(np.unique(data.digit_sizes)) > 4  # sizes really vary


def test_rgb_repeats_the_gray_value():
    gray = make_digit_canvases(10, seed=3)
    rgb = make_digit_canvases(10, channels=3, seed=3)
    assert rgb.images.shape == (10, 48, 48, 3)
    np.testing.assert_array_equal(rgb.images, np.repeat(gray.images, 3, axis=-1))


def test_same_seed_same_data_different_seed_different_data():
    kwargs = dict(canvas_size=56, digit_size=(16, 28), clutter=3, noise=0.05, seed=11)
    first, second = make_digit_canvases(50, **kwargs), make_digit_canvases(50, **kwargs)
    for name in ("images", "labels", "boxes", "sources", "digit_sizes"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name), err_msg=name)
    other = make_digit_canvases(50, **{**kwargs, "seed": 12})
    assert not np.array_equal(first.images, other.images)
    assert not np.array_equal(first.boxes, other.boxes)
    assert not np.array_equal(first.sources, other.sources)


def test_labels_are_balanced_and_match_the_source_digits():
    data = make_digit_canvases(1003, seed=5)
    counts = np.bincount(data.labels, minlength=10)
    assert counts.size == 10 and counts.min() >= 100 and counts.max() <= 101
    np.testing.assert_array_equal(data.labels, _digit_labels()[data.sources])
    assert len(np.unique(data.labels[:20])) > 5  # shuffled, not sorted by class


def test_boxes_lie_inside_the_canvas_and_tightly_hold_the_ink():
    size, threshold = 40, synthetic.INK_THRESHOLD
    data = make_digit_canvases(300, canvas_size=size, digit_size=(10, 24), seed=2)
    x0, y0, x1, y1 = data.boxes.T
    assert np.all((0 <= x0) & (x0 <= x1) & (x1 < size) & (0 <= y0) & (y0 <= y1) & (y1 < size))
    assert np.all(x1 - x0 + 1 <= data.digit_sizes) and np.all(y1 - y0 + 1 <= data.digit_sizes)
    for image, (a, b, c, d) in zip(data.images[..., 0], data.boxes):
        inside = np.zeros_like(image, dtype=bool)
        inside[b : d + 1, a : c + 1] = True
        assert np.all(image[~inside] == 0.0), "ink outside the box"
        box = image[b : d + 1, a : c + 1]
        # Tight: the first and last row and column of the box each hold ink.
        for edge in (box[0], box[-1], box[:, 0], box[:, -1]):
            assert edge.max() > threshold
        # Faint pixels are not drawn: everything non-zero is ink.
        assert np.all((box == 0.0) | (box > threshold))


def test_ink_threshold_sets_the_box_definition():
    loose = make_digit_canvases(100, ink_threshold=0.05, seed=9)
    strict = make_digit_canvases(100, ink_threshold=0.5, seed=9)
    def areas(data: DigitCanvases) -> np.ndarray:
        x0, y0, x1, y1 = data.boxes.T
        return (x1 - x0 + 1) * (y1 - y0 + 1)

    assert np.all(areas(strict) <= areas(loose)) and np.any(areas(strict) < areas(loose))
    assert strict.images.max() > 0.5 and np.all((strict.images == 0) | (strict.images > 0.5))


def test_center_offset_shifts_images_and_boxes_exactly():
    kwargs = dict(positions="center", jitter=2, digit_size=(14, 20), seed=4)
    centred = make_digit_canvases(40, **kwargs)
    shifted = make_digit_canvases(40, offset=(-3, 8), **kwargs)
    np.testing.assert_array_equal(shifted.boxes, centred.boxes + [8, -3, 8, -3])
    np.testing.assert_array_equal(shifted.images, np.roll(centred.images, (-3, 8), axis=(1, 2)))
    np.testing.assert_array_equal(shifted.labels, centred.labels)


def test_center_positions_stay_near_the_centre_and_random_ones_spread():
    size = 48
    centre = make_digit_canvases(300, canvas_size=size, positions="center", seed=1)
    spread = make_digit_canvases(300, canvas_size=size, positions="random", seed=1)
    centre_x = (centre.boxes[:, 0] + centre.boxes[:, 2]) / 2
    random_x = (spread.boxes[:, 0] + spread.boxes[:, 2]) / 2
    assert np.all(np.abs(centre_x - (size - 1) / 2) <= 6)
    assert random_x.min() < 14 and random_x.max() > size - 15
    assert random_x.std() > 3 * centre_x.std()


def test_clutter_and_noise_add_pixels_outside_the_box_but_keep_the_box():
    clean = make_digit_canvases(50, positions="center", seed=8)
    busy = make_digit_canvases(50, positions="center", clutter=4, seed=8)
    noisy = make_digit_canvases(50, positions="center", noise=0.1, seed=8)

    def outside(data: DigitCanvases) -> float:
        mask = np.ones(data.images.shape[:3], dtype=bool)
        for i, (a, b, c, d) in enumerate(data.boxes):
            mask[i, b : d + 1, a : c + 1] = False
        return float((data.images[..., 0][mask] > 0).mean())

    assert outside(clean) == 0.0
    assert outside(busy) > 0.02
    assert outside(noisy) > 0.3
    # Noise is drawn after all placements, so the digits and their boxes are the same.
    np.testing.assert_array_equal(noisy.boxes, clean.boxes)
    assert 0.0 <= noisy.images.min() and noisy.images.max() <= 1.0


def test_train_and_test_pools_are_disjoint_whatever_the_seeds():
    train_pool, test_pool = digit_source_split()
    assert len(np.intersect1d(train_pool, test_pool)) == 0
    assert len(train_pool) + len(test_pool) == 1797
    labels = _digit_labels()
    test_share = np.bincount(labels[test_pool], minlength=10) / np.bincount(labels)
    assert np.all(np.abs(test_share - 0.3) < 0.01), "stratified by class"
    train = make_digit_canvases(2000, split="train", seed=0)
    test = make_digit_canvases(2000, split="test", seed=0)
    assert set(train.sources) <= set(train_pool) and set(test.sources) <= set(test_pool)
    assert len(set(test.sources)) > 0.8 * len(test_pool)  # the pool is really used
    other = digit_source_split(0.5)
    assert len(other[1]) > len(test_pool)


def test_subset():
    data = make_digit_canvases(30, seed=0)
    part = data.subset(data.labels == 3)
    assert len(part) == 3 and np.all(part.labels == 3)
    assert part.images.shape == (3, 48, 48, 1)
    np.testing.assert_array_equal(data.subset(slice(5, 7)).boxes, data.boxes[5:7])


def test_scaling_is_bilinear_like_skimage():
    from skimage.transform import resize

    digit = np.random.default_rng(0).random((1, 8, 8)).astype(np.float32)
    ours = synthetic._bilinear_matrix(21) @ digit[0] @ synthetic._bilinear_matrix(21).T
    reference = resize(digit[0], (21, 21), order=1, mode="edge", anti_aliasing=False)
    np.testing.assert_allclose(ours, reference, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(n=0), ValueError, r"n must be an integer >= 1, got int 0"),
        (dict(n=2.5), TypeError, r"n must be an integer"),
        (dict(canvas_size=6), ValueError, r"canvas_size must be an integer >= 8, got int 6"),
        (dict(digit_size=60), ValueError, r"digit_size must be an integer in 8\.\.48, got int 60"),
        (dict(digit_size=(20, 10)), ValueError, r"got \(20, 10\)"),
        (dict(digit_size="big"), TypeError, r"digit_size must be an integer in 8\.\.48, got str"),
        (dict(positions="corner"), ValueError, r"positions must be one of .*'corner'"),
        (dict(offset=(0, 3)), ValueError, r"positions='center' only"),
        (dict(positions="center", offset=(0, 20)), ValueError, r"off the 48-pixel canvas"),
        (dict(positions="center", offset=5), TypeError, r"offset must be a pair"),
        (dict(positions="center", jitter=-1), ValueError, r"jitter must be an integer >= 0"),
        (dict(clutter=-2), ValueError, r"clutter must be an integer >= 0"),
        (dict(noise=-0.1), ValueError, r"noise must be a finite number in \[0, 1\], got float -0.1"),
        (dict(channels=2), ValueError, r"channels must be 1 or 3, got 2"),
        (dict(split="validation"), ValueError, r"split must be one of .*'validation'"),
        (dict(test_fraction=1.0), ValueError, r"strictly between 0 and 1"),
        (dict(ink_threshold=1.0), ValueError, r"ink_threshold must be a finite number in \[0, 1\)"),
        (dict(seed=1.5), TypeError, r"seed must be an integer >= 0, got float 1.5"),
    ],
)
def test_bad_arguments_are_explained(kwargs, error, message):
    arguments = {"n": 5, **kwargs}
    with pytest.raises(error, match=message):
        make_digit_canvases(arguments.pop("n"), **arguments)


@pytest.mark.parametrize("seed, error", [(-1, ValueError), (None, TypeError), (1.5, TypeError)])
def test_a_negative_or_missing_seed_is_refused_by_name(seed, error):
    # Before: seed=-1 failed inside numpy ("expected non-negative integer") without naming it.
    with pytest.raises(error, match=r"seed must be an integer >= 0, got (NoneType None|float 1.5|int -1)"):
        make_digit_canvases(4, seed=seed)


def test_synthetic_sets_too_large_for_memory_are_refused_before_anything_is_made():
    """1 GiB is the limit (checks.MAX_ARRAY_BYTES): the message names the call and the size."""
    import helpers

    with pytest.raises(ValueError, match=r"make_photo_composites\(10000, size=224\) of shape "
                                         r"\(10000, 224, 224, 3\) would take 1\.4 GiB"):
        helpers.make_photo_composites(10_000)
    with pytest.raises(ValueError, match=r"make_digit_canvases\(100000, canvas_size=64\) .*"
                                         r"above the limit of 1 GiB; ask for fewer"):
        helpers.make_digit_canvases(100_000, canvas_size=64)
    assert helpers.make_photo_composites(2, size=32).images.shape == (2, 32, 32, 3)
