"""helpers.checks: one checker, one wording and one exception type for every plain argument."""

from __future__ import annotations

import numpy as np
import pytest

import helpers
from helpers.checks import ArgumentError, choice, flag, integer, number


def test_integers_numbers_and_flags():
    assert integer("n", np.int64(3), 1) == 3 and type(integer("n", 3)) is int
    assert number("t", 0.5, 0, 1) == 0.5 and flag("f", np.bool_(True)) is True
    for bad in (True, 2.0, "3", None):
        with pytest.raises(ArgumentError, match="n must be an integer >= 1, got"):
            integer("n", bad, 1)
    with pytest.raises(ArgumentError, match=r"k must be an integer in 1\.\.5, got int 6"):
        integer("k", 6, 1, 5)
    for bad in (float("nan"), float("inf"), 1.5, -0.1, False):
        with pytest.raises(ArgumentError, match=r"t must be a finite number in \[0, 1\]"):
            number("t", bad, 0, 1)
    with pytest.raises(ArgumentError, match=r"rate must be a finite number > 0"):
        number("rate", 0.0, 0, low_open=True)
    with pytest.raises(ArgumentError, match="must be True or False"):
        flag("f", 1)


def test_a_named_choice():
    assert choice("baseline", "grey", ("black", "grey")) == "grey"
    assert choice("weighting", "softmax", {"probability": 1, "softmax": 2}) == "softmax"
    for bad in ("white", None, 3):
        with pytest.raises(ArgumentError, match=r"baseline must be one of 'black', 'grey', got "):
            choice("baseline", bad, ("black", "grey"))


def test_the_error_is_both_a_type_error_and_a_value_error():
    assert issubclass(ArgumentError, TypeError) and issubclass(ArgumentError, ValueError)


@pytest.mark.parametrize("call", [
    lambda: helpers.set_seed(-1),
    lambda: helpers.make_digit_canvases(0),
    lambda: helpers.make_photo_composites(1.5),
    lambda: helpers.build_small_cnn((32, 32, 3), 0),
    lambda: helpers.cam_to_box(np.ones((4, 4)), threshold=2.0),
])
def test_public_functions_use_the_one_checker(call):
    with pytest.raises(ArgumentError, match="must be an integer|must be a finite number"):
        call()
