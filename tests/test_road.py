"""ROAD (helpers.evaluate.road, notebook 06): the imputation against harmonic images and an
independent iterative solve, and MoRF vs LeRF on a model that reads one region only."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from helpers.checks import ArgumentError
from helpers.evaluate.road import NEIGHBOURS, noisy_linear_imputation, road
from helpers.models import Classifier

# Also run under KERAS_BACKEND=jax (make test-jax).
pytestmark = pytest.mark.jax


def _ramp(height: int = 12, width: int = 14) -> np.ndarray:
    rows, cols = np.mgrid[:height, :width]
    return np.stack([0.02 * rows + 0.01 * cols + 0.1, 0.5 - 0.015 * cols,
                     0.03 * rows], axis=-1)  # (H, W, 3), linear in each channel


def test_neighbour_weights_are_roads():
    weights = {(dy, dx): w for dy, dx, w in NEIGHBOURS}
    assert len(weights) == 8 and np.isclose(sum(weights.values()), 1.0)
    assert weights[0, 1] == weights[-1, 0] == 1 / 6 and weights[1, 1] == weights[-1, 1] == 1 / 12


def test_a_linear_ramp_is_imputed_exactly_and_the_noise_is_what_was_asked():
    """A linear function equals the weighted mean of its 8 neighbours (the weights are symmetric),
    so an interior hole is filled exactly; with noise 0.01 the error is that noise."""
    image = _ramp()
    removed = np.zeros(image.shape[:2], bool)
    removed[3:9, 4:11] = True
    removed[5, 2] = True  # an isolated pixel too
    exact = noisy_linear_imputation(image, removed, noise=0.0)
    np.testing.assert_allclose(exact, image, atol=1e-10)
    noisy = noisy_linear_imputation(image, removed, noise=0.01, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(noisy[~removed], image[~removed])  # kept pixels untouched
    error = (noisy - image)[removed]
    assert 0.007 < error.std() < 0.013 and abs(error.mean()) < 0.003


def test_the_solve_equals_an_iterative_weighted_mean_at_the_border_too():
    """Gauss-Seidel on x_i = Σ_j w_j x_j / Σ_j w_j (neighbours inside the image only), written
    independently, converges to the sparse solve; also for a hole on the image border."""
    rng = np.random.default_rng(1)
    image = rng.random((9, 10, 3))
    removed = rng.random((9, 10)) < 0.5
    removed[0, :] = True  # the whole top row
    solved = noisy_linear_imputation(image, removed, noise=0.0)
    guess = np.where(removed[..., None], 0.5, image)
    for _ in range(2000):
        for y, x in zip(*np.nonzero(removed)):
            total, weight_sum = np.zeros(3), 0.0
            for dy, dx, w in NEIGHBOURS:
                if 0 <= y + dy < 9 and 0 <= x + dx < 10:
                    total += w * guess[y + dy, x + dx]
                    weight_sum += w
            guess[y, x] = total / weight_sum
    np.testing.assert_allclose(solved, guess, atol=1e-8)
    with pytest.raises(ValueError, match="every pixel is removed"):
        noisy_linear_imputation(image, np.ones((9, 10), bool))


def _region_classifier() -> Classifier:
    """Reads only rows 2:8, columns 3:11: class 0's logit is the mean redness (R − G, on [0, 1])
    there, class 1's its opposite."""
    image = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(2, 1, use_bias=False, name="redness")(image)
    x = keras.layers.Cropping2D(((2, 8), (3, 5)))(x)  # rows 2..7, columns 3..10
    logits = keras.layers.Dense(2, use_bias=False, name="logits")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(image, logits, name="region")
    model.get_layer("redness").set_weights([np.array([[[[1.0, -1.0], [-1.0, 1.0], [0, 0]]]])])
    model.get_layer("logits").set_weights([np.eye(2)])
    return Classifier(name="region", model=model, input_size=(16, 16), num_classes=2,
                      normalize=lambda x: x / 255.0)


def test_morf_and_lerf_on_a_model_that_reads_one_region():
    """The map ranks the region first. MoRF: once the region's 48 pixels (19 % of 256) are gone,
    they are imputed from the grey around them, redness 0, p = 0.5. LeRF: the region is the last
    to go, so up to 81 % removed the model sees the same pixels, p unchanged."""
    classifier = _region_classifier()
    photo = np.full((16, 16, 3), 128, np.uint8)
    photo[2:8, 3:11] = (250, 20, 20)
    truth = np.zeros((16, 16), np.float32)
    truth[2:8, 3:11] = 1.0
    truth += np.linspace(0, 0.01, 256).reshape(16, 16)  # an order outside the region too
    curves = road(classifier, [photo], truth[None], [0], fractions=(0.1, 0.2, 0.5, 0.8, 0.9))
    redness = (250 - 20) / 255.0
    p_photo = 1 / (1 + np.exp(-2 * redness))  # softmax of (r, -r)
    np.testing.assert_allclose(curves.original, p_photo, rtol=1e-5)
    np.testing.assert_allclose(curves.lerf[0, :4], p_photo, rtol=1e-5)  # 10 … 80 % removed
    # 90 %: only 26 pixels are kept, all red, so the imputation is red everywhere (a constant is
    # its neighbours' mean): the region is red again, up to the noise.
    np.testing.assert_allclose(curves.lerf[0, 4], p_photo, atol=0.005)
    np.testing.assert_allclose(curves.morf[0, 1:], 0.5, atol=0.02)  # 20 % and more: region gone
    assert 0.5 < curves.morf[0, 0] < p_photo  # 10 %: part of it
    assert curves.morf_area[0] < curves.lerf_area[0]
    assert curves.lerf_top1[0, :4].all() and curves.morf.shape == curves.morf_top1.shape == (1, 5)


def test_road_checks_its_arguments():
    classifier = _region_classifier()
    photo, maps = np.zeros((16, 16, 3), np.uint8), np.ones((1, 4, 4), np.float32)
    with pytest.raises(ArgumentError, match=r"each of fractions must be a finite number in \[0, 1\)"):
        road(classifier, [photo], maps, [0], fractions=(0.5, 1.0))
    with pytest.raises(ValueError, match="fractions must increase"):  # (0.5, 0.1): negative areas
        road(classifier, [photo], maps, [0], fractions=(0.5, 0.1))
    with pytest.raises(ArgumentError, match="noise"):
        road(classifier, [photo], maps, [0], noise=-0.1)
    with pytest.raises(ArgumentError, match="seed must be an integer"):
        road(classifier, [photo], maps, [0], seed=1.5)
    with pytest.raises(TypeError, match="helpers.Classifier"):
        road(classifier.model, [photo], maps, [0])
    with pytest.raises(ValueError, match=r"class ids must be in 0\.\.1"):
        road(classifier, [photo], maps, [2])
