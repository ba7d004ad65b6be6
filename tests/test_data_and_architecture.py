"""Sample photos and the parameter breakdown."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import helpers


def test_sample_images_are_rgb_uint8(samples):
    assert list(samples) == list(helpers.data.SAMPLE_IMAGE_NAMES)
    assert len(samples) == 7
    for name, image in samples.items():
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3, name
        assert image.std() > 10, name  # a real photo, not a blank
    assert samples["chelsea"].shape == (300, 451, 3)


def test_unknown_sample_image():
    with pytest.raises(ValueError, match="available: chelsea"):
        helpers.data.sample_image("lena")


def test_vgg16_breakdown():
    breakdown = helpers.parameter_breakdown(helpers.load_classifier("vgg16", weights=None).model)
    assert breakdown.total == 138_357_544
    assert breakdown.by_group["dense"] == 123_642_856
    assert round(100 * breakdown.share("dense"), 1) == 89.4
    fc1 = [row for row in breakdown.layers if row[0] == "fc1"][0]
    assert fc1[3] == 7 * 7 * 512 * 4096 + 4096 == 102_764_544


def test_resnet50_breakdown():
    breakdown = helpers.parameter_breakdown(helpers.load_classifier("resnet50", weights=None).model)
    assert breakdown.total == 25_636_712
    assert breakdown.by_group["dense"] == 2048 * 1000 + 1000
    assert round(100 * breakdown.share("dense"), 1) == 8.0
    assert breakdown.by_group["batch_norm"] > 0


def test_breakdown_descends_into_nested_models():
    base = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3)], name="base")
    model = keras.Sequential([base, keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    breakdown = helpers.parameter_breakdown(model)
    assert breakdown.by_group == {"conv": 3 * 3 * 3 * 4 + 4, "dense": 4 * 2 + 2,
                                  "batch_norm": 0, "other": 0}


def test_sample_images_refuses_a_str_and_an_empty_list():
    # Before: "chelsea" was read letter by letter ("unknown sample image 'c'"); [] gave all seven.
    with pytest.raises(TypeError, match=r"got the str 'chelsea'; use sample_images\(\['chelsea'\]\)"):
        helpers.sample_images("chelsea")
    with pytest.raises(ValueError, match=r"names is empty; pass None for all seven"):
        helpers.sample_images([])
    with pytest.raises(TypeError, match=r"must be a str, got int 3"):
        helpers.data.sample_image(3)
    assert list(helpers.sample_images(("coffee", "chelsea"))) == ["coffee", "chelsea"]


def test_share_of_an_unknown_group_is_explained():
    breakdown = helpers.parameter_breakdown(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))
    assert breakdown.share("dense") == 1.0
    with pytest.raises(ValueError, match=r"unknown layer group 'dense_layers'; the groups are"):
        breakdown.share("dense_layers")  # before: KeyError
