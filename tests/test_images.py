"""helpers.images.as_images: the forms in which images may be passed, values untouched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers.images import as_images


def test_arrays_become_batches_and_keep_their_values_and_dtype():
    image = np.full((4, 5, 3), 7.5, np.float64)  # any range: no value check here
    batch = as_images(image)
    assert batch.shape == (1, 4, 5, 3) and batch.dtype == np.float64
    assert np.shares_memory(batch, image)  # no copy
    stacked = np.zeros((2, 4, 5, 1), np.int16)
    assert as_images(stacked) is stacked
    assert as_images(np.full((2, 2, 3), -300.0)).min() == -300.0  # preprocessed inputs pass


def test_lists_tuples_dicts_and_generators_become_lists():
    first, second = np.zeros((4, 5, 3), np.uint8), np.ones((6, 2, 3), np.uint8)
    for form in ([first, second], (first, second), {"b": first, "a": second},
                 (image for image in (first, second)), iter([first, second])):
        result = as_images(form)
        assert isinstance(result, list) and len(result) == 2
        assert result[0] is first and result[1] is second  # a dict gives its values, in order


@pytest.mark.parametrize("bad", ["chelsea.jpg", Path("chelsea.jpg"), b"chelsea.jpg"])
def test_paths_and_strings_are_refused_with_what_to_pass(bad):
    with pytest.raises(TypeError, match=r"not pixels; read the file first"):
        as_images(bad)
    with pytest.raises(TypeError, match=r"image 1 is a .*read the file first"):
        as_images([np.zeros((2, 2, 3)), bad])


@pytest.mark.parametrize(
    "empty, message",
    [([], "empty list"), ((), "empty tuple"), ({}, "empty dict"),
     ((i for i in []), "generator that yielded nothing"),
     (np.zeros((0, 4, 4, 3)), "batch of zero images"),
     (np.zeros((4, 0, 3)), "empty"), ([np.zeros((0, 4, 3))], "image 0 is empty")],
)
def test_empty_containers_are_refused(empty, message):
    with pytest.raises(ValueError, match=message):
        as_images(empty)


@pytest.mark.parametrize(
    "bad, error, message",
    [
        (np.array([["a"]]), TypeError, "dtype <U1"),
        (np.zeros((2, 2, 3), bool), TypeError, "dtype bool"),
        (np.zeros((2, 2, 3), complex), TypeError, "dtype complex128"),
        ([np.zeros((2, 2, 3)), [[1, 2], [3]]], TypeError, "ragged"),
        (None, TypeError, "None"),
        (3, TypeError, r"images is a int \(3\)"),
        ([None], TypeError, "image 0 is None"),
        (np.zeros((4, 4)), ValueError, r"grayscale image\? add a channel axis"),
        (np.zeros((1, 2, 4, 4, 3)), ValueError, r"expected one image \(H, W, C\)"),
        ([np.zeros((2, 4, 4, 3))], ValueError, r"a batch\? pass the batch array itself"),
    ],
)
def test_bad_forms_are_refused_with_what_was_given(bad, error, message):
    with pytest.raises(error, match=message):
        as_images(bad)
