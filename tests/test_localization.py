"""cam_to_box, box_iou and the localisation metrics on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.evaluate.boxes import NO_BOX, box_iou, cam_to_box, cams_to_boxes, scale_box
from helpers.evaluate.localization import (
    localization_accuracy,
    localization_report,
    max_box_accuracy,
    pointing_game,
)

# Also run under KERAS_BACKEND=jax (make test-jax).
pytestmark = pytest.mark.jax


def test_single_blob_box_is_inclusive():
    cam = np.zeros((10, 12))
    cam[2:5, 3:8] = 1.0  # rows 2..4, columns 3..7
    assert cam_to_box(cam) == (3, 2, 7, 4)


def test_threshold_is_relative_to_maximum():
    cam = np.zeros((8, 8))
    cam[1, 1] = 10.0
    cam[1, 2:6] = 3.0  # 30 % of the max: kept at 0.2, dropped at 0.5
    assert cam_to_box(cam, 0.2) == (1, 1, 5, 1)
    assert cam_to_box(cam, 0.5) == (1, 1, 1, 1)
    assert cam_to_box(cam * 7.5, 0.2) == cam_to_box(cam, 0.2)  # scale does not matter


def test_largest_component_wins_not_the_peak():
    cam = np.zeros((10, 10))
    cam[0, 0] = 5.0  # the peak, alone
    cam[5:9, 5:9] = 2.0  # 16 pixels above 0.2 * 5
    assert cam_to_box(cam) == (5, 5, 8, 8)


def test_diagonal_pixels_are_one_component():
    # 8-connectivity: a diagonal line is a single component, so its box spans it all.
    cam = np.eye(6)
    cam[0, 5] = 1.0  # an isolated pixel elsewhere
    assert cam_to_box(cam) == (0, 0, 5, 5)


def test_touching_components_merge():
    cam = np.zeros((6, 10))
    cam[1:4, 1:4] = 1.0
    cam[1:4, 4:7] = 0.5  # touches the first block: one component
    assert cam_to_box(cam) == (1, 1, 6, 3)


def test_tie_goes_to_component_with_highest_value_then_first():
    cam = np.zeros((6, 12))
    cam[1:3, 1:3] = 0.5
    cam[1:3, 8:10] = 0.5
    cam[2, 9] = 1.0  # same size, but this one holds the maximum
    assert cam_to_box(cam) == (8, 1, 9, 2)
    cam[2, 9] = 0.5
    cam[0, 0] = 0.0
    cam[1:3, 1:3] = 1.0
    cam[1:3, 8:10] = 1.0  # exact tie everywhere: first in row-major order
    assert cam_to_box(cam) == (1, 1, 2, 2)


def test_flat_positive_map_covers_everything():
    assert cam_to_box(np.full((7, 9), 3.0)) == (0, 0, 8, 6)


@pytest.mark.parametrize("value", [0.0, -2.0])
def test_map_without_positive_evidence_has_no_box(value):
    assert cam_to_box(np.full((5, 5), value)) is None
    cam = np.full((5, 5), -3.0)
    cam[2, 2] = value
    assert cam_to_box(cam) is None
    boxes = cams_to_boxes(np.stack([np.full((5, 5), value), np.ones((5, 5))]))
    assert tuple(boxes[0]) == NO_BOX and tuple(boxes[1]) == (0, 0, 4, 4)


def test_negative_values_around_a_positive_blob():
    cam = np.full((6, 6), -1.0)
    cam[2:4, 2:4] = 1.0
    assert cam_to_box(cam) == (2, 2, 3, 3)


@pytest.mark.parametrize(
    "cam, threshold, message",
    [
        (np.zeros(5), 0.2, "2-D map"),
        (np.array([[np.nan, 1.0]]), 0.2, "NaN"),
        (np.ones((3, 3)), 1.5, r"\[0, 1\]"),
        (np.ones((0, 3)), 0.2, "empty"),
    ],
)
def test_cam_to_box_rejects_bad_input(cam, threshold, message):
    with pytest.raises(ValueError, match=message):
        cam_to_box(cam, threshold)


def test_iou_inclusive_areas():
    assert box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 1.0  # one pixel each
    assert box_iou((0, 0, 1, 1), (1, 1, 2, 2)) == pytest.approx(1 / 7)  # 1 shared of 4+4-1
    assert box_iou((0, 0, 3, 3), (0, 0, 1, 3)) == pytest.approx(8 / 16)
    assert box_iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0  # touching corners do not overlap
    assert box_iou((0, 0, 1, 1), (2, 0, 3, 1)) == 0.0  # adjacent, no shared pixel


def test_iou_broadcasts_and_handles_missing_boxes():
    a = np.array([[0, 0, 9, 9], [0, 0, 4, 4], list(NO_BOX)])
    b = np.array([0, 0, 4, 4])
    np.testing.assert_allclose(box_iou(a, b), [0.25, 1.0, 0.0])
    assert box_iou(None, (0, 0, 1, 1)) == 0.0


def test_iou_rejects_inverted_boxes():
    with pytest.raises(ValueError, match="x1 < x0"):
        box_iou((5, 0, 1, 3), (0, 0, 1, 1))
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        box_iou((0, 0, 1), (0, 0, 1, 1))


def test_scale_box_between_frames():
    assert scale_box((0, 0, 6, 6), (7, 7), (224, 224)) == (0, 0, 223, 223)
    assert scale_box((1, 2, 1, 2), (7, 7), (14, 14)) == (2, 4, 3, 5)
    assert scale_box((10, 10, 19, 19), (100, 100), (50, 50)) == (5, 5, 9, 9)
    assert scale_box(None, (7, 7), (224, 224)) is None


def test_localization_accuracy_and_top1_variant():
    truth = np.array([[0, 0, 9, 9]] * 4)
    predicted = np.array([[0, 0, 9, 9], [0, 0, 6, 6], [0, 0, 7, 7], list(NO_BOX)])
    # IoUs: 1.0, 0.49, 0.64, 0
    assert localization_accuracy(predicted, truth) == 0.5
    assert localization_accuracy(predicted, truth, correct_class=[True, True, False, True]) == 0.25
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        localization_accuracy(predicted[:2], truth)


def test_pointing_game():
    cams = np.zeros((3, 8, 8))
    cams[0, 2, 2] = 1.0  # inside
    cams[1, 7, 7] = 1.0  # outside
    cams[2, 5, 5] = 1.0  # one pixel outside: inside with tolerance 1
    truth = np.array([[1, 1, 4, 4]] * 3)
    assert pointing_game(cams, truth, tolerance=0) == pytest.approx(1 / 3)
    # (5, 5) is sqrt(2) from the corner (4, 4): a disc of radius 1 misses it, radius 2 reaches it.
    assert pointing_game(cams, truth, tolerance=1) == pytest.approx(1 / 3)
    assert pointing_game(cams, truth, tolerance=2) == pytest.approx(2 / 3)
    # (7, 7) is sqrt(18) ≈ 4.24 away: within Zhang et al.'s default 15 pixels.
    assert pointing_game(cams, truth) == 1.0
    assert pointing_game(cams, truth, tolerance=4) == pytest.approx(2 / 3)
    assert pointing_game(cams, truth, tolerance=5) == 1.0


def test_max_box_accuracy_finds_the_better_threshold():
    # A blob with a wide faint halo: 0.2 keeps the halo (box too big), 0.6 only the core.
    cam = np.zeros((20, 20))
    cam[2:18, 2:18] = 0.3
    cam[8:12, 8:12] = 1.0
    cams = np.stack([cam] * 3)
    truth = np.array([[8, 8, 11, 11]] * 3)
    result = max_box_accuracy(cams, truth, protocol="zhou")
    assert localization_accuracy(cams_to_boxes(cams, 0.2), truth) == 0.0
    assert result.best == 1.0 and 0.3 < result.best_threshold <= 1.0
    assert result.accuracies.shape == result.thresholds.shape == (20,)


def _toy_report_inputs():
    """Four 10x10 maps with known boxes: a hit, a box too big, a miss, and no positive value."""
    cams = np.zeros((4, 10, 10))
    cams[0, 2:6, 2:6] = 1.0  # box (2, 2, 5, 5): IoU 1 with the truth
    cams[1, 0:10, 0:10] = 0.5
    cams[1, 3, 3] = 1.0  # whole map kept at 0.2: box (0, 0, 9, 9), IoU 16/100
    cams[2, 7:9, 7:9] = 1.0  # far from the truth: IoU 0, peak outside
    cams[3] = -1.0  # no evidence: no box
    truth = np.array([[2, 2, 5, 5]] * 4)
    return cams, truth


def test_localization_report_on_toy_maps():
    cams, truth = _toy_report_inputs()
    report = localization_report(cams, truth, labels=[1, 2, 3, 4], predicted=[1, 2, 0, 4],
                                 protocol="zhou", pointing_tolerance=0)  # Zhou's rule, peak in box
    np.testing.assert_array_equal(report.boxes, [[2, 2, 5, 5], [0, 0, 9, 9], [7, 7, 8, 8], NO_BOX])
    np.testing.assert_allclose(report.ious, [1.0, 0.16, 0.0, 0.0])
    assert report.gt_known == 0.25 and report.hits.tolist() == [True, False, False, False]
    assert report.classification == 0.75 and report.correct.tolist() == [True, True, False, True]
    assert report.top1 == 0.25
    # Peaks: (2, 2) inside, (3, 3) inside, (7, 7) outside, a flat -1 map peaks at (0, 0), outside.
    assert report.pointing == 0.5
    # At tau = 0 every pixel >= 0 is kept, so the first map's box is the whole map (a miss); from
    # 0.05 on it is a hit. Above 0.5 the second map keeps only its peak pixel (IoU 1/16): still a
    # miss. So the sweep's best is 0.25, first reached at 0.05.
    assert report.max_box.accuracies[0] == 0.0
    assert report.max_box.best == 0.25 and report.max_box.best_threshold == 0.05
    summary = report.summary()
    assert summary["classification"] == 0.75 and summary["top-1 loc. (zhou, tau=0.2)"] == 0.25
    assert summary["GT-known loc. (zhou, tau=0.2)"] == 0.25
    assert summary["pointing game"] == 0.5 and summary["best tau (zhou)"] == 0.05
    assert summary["MaxBoxAcc (zhou)"] == 0.25 and report.max_box.protocol == "zhou"
    assert summary["mean IoU"] == pytest.approx((1.0 + 0.16) / 4)


def test_localization_report_agrees_with_the_single_metrics():
    rng = np.random.default_rng(0)
    cams = rng.normal(size=(30, 12, 12)).cumsum(axis=1).cumsum(axis=2)  # smooth-ish random maps
    x0, y0 = rng.integers(0, 6, 30), rng.integers(0, 6, 30)
    truth = np.stack([x0, y0, x0 + rng.integers(2, 6, 30), y0 + rng.integers(2, 6, 30)], axis=1)
    report = localization_report(cams, truth, threshold=0.35, thresholds=[0.1, 0.35, 0.6],
                                 protocol="zhou", pointing_tolerance=0)
    boxes = cams_to_boxes(cams, 0.35)
    np.testing.assert_array_equal(report.boxes, boxes)
    assert report.gt_known == localization_accuracy(boxes, truth)
    assert report.pointing == pointing_game(cams, truth, tolerance=0)
    sweep = max_box_accuracy(cams, truth, protocol="zhou", thresholds=[0.1, 0.35, 0.6])
    np.testing.assert_array_equal(report.max_box.accuracies, sweep.accuracies)
    assert report.max_box.accuracies[1] == report.gt_known  # the sweep includes the threshold
    assert np.isnan(report.classification) and np.isnan(report.top1) and report.correct is None


def test_localization_report_rejects_mismatched_inputs():
    cams, truth = _toy_report_inputs()
    with pytest.raises(ValueError, match=r"true_boxes must be \(N, 4\) for 4 maps"):
        localization_report(cams, truth[:3])
    with pytest.raises(ValueError, match="both labels and predicted"):
        localization_report(cams, truth, labels=[0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"must be \(4,\)"):
        localization_report(cams, truth, labels=[0, 1], predicted=[0, 1])


# Bad input gets a clear error, never a silent score ---------------------------------------------


@pytest.mark.parametrize(
    "iou_threshold, error, message",
    [(50, ValueError, r"in \(0, 1\].*got 50 \(a percentage\? pass 0\.5"),  # before: 0.0
     (-1, ValueError, r"in \(0, 1\]"),  # before: 1.0
     (float("nan"), ValueError, r"in \(0, 1\]"),  # before: 0.0
     (0, ValueError, r"in \(0, 1\]"),
     ("0.5", TypeError, r"iou_threshold must be a finite number in \(0, 1\], got str")],
)
def test_localization_accuracy_refuses_iou_thresholds_outside_0_1(iou_threshold, error, message):
    truth = np.array([[0, 0, 9, 9]] * 2)
    with pytest.raises(error, match=message):
        localization_accuracy(truth, truth, iou_threshold=iou_threshold)
    with pytest.raises(error, match=message):
        max_box_accuracy(np.ones((2, 10, 10)), truth, iou_threshold=iou_threshold)
    with pytest.raises(error, match=message):
        localization_report(np.ones((2, 10, 10)), truth, iou_threshold=iou_threshold)


@pytest.mark.parametrize("correct", [[3, 7], [1, 0], [1.0, 0.0], ["yes", "no"]])
def test_correct_class_must_be_booleans_not_labels(correct):
    truth = np.array([[0, 0, 9, 9]] * 2)
    # Before: [3, 7] was cast to [True, True] and scored 1.0.
    with pytest.raises(TypeError, match=r"correct_class must be booleans"):
        localization_accuracy(truth, truth, correct_class=correct)
    assert localization_accuracy(truth, truth, correct_class=np.array([3, 7]) == 3) == 0.5


def test_no_samples_is_an_error_not_nan():
    empty_boxes, empty_cams = np.zeros((0, 4)), np.zeros((0, 8, 8))
    with pytest.raises(ValueError, match="no samples"):
        localization_accuracy(empty_boxes, empty_boxes)
    with pytest.raises(ValueError, match="no samples"):  # before: nan
        pointing_game(empty_cams, empty_boxes)
    with pytest.raises(ValueError, match="no samples"):
        max_box_accuracy(empty_cams, empty_boxes)
    with pytest.raises(ValueError, match="no samples"):  # before: a report full of NaN
        localization_report(empty_cams, empty_boxes)


def test_pointing_game_and_report_arguments_are_checked():
    cams, truth = _toy_report_inputs()
    for tolerance in (-1, 1.5, True):
        with pytest.raises(ValueError, match=r"tolerance \(pixels\) must be an integer >= 0"):
            pointing_game(cams, truth, tolerance=tolerance)
    with pytest.raises(TypeError, match="labels must be integer class indices, got dtype <U1"):
        localization_report(cams, truth, labels=list("abcd"), predicted=[0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"threshold must be a finite number in \[0, 1\], got int 20"):
        localization_report(cams, truth, threshold=20)
    with pytest.raises(ValueError, match=r"thresholds must be fractions in \[0, 1\]"):
        max_box_accuracy(cams, truth, thresholds=[0.2, 20])
    with pytest.raises(ValueError, match=r"threshold must be a finite number in \[0, 1\]"):
        cams_to_boxes(np.zeros((0, 4, 4)), threshold=float("nan"))


def test_scale_box_refuses_a_box_outside_its_frame():
    # Before: clipped silently to the target frame.
    with pytest.raises(ValueError, match=r"outside the 7x7 frame"):
        scale_box((0, 0, 9, 9), (7, 7), (224, 224))
    with pytest.raises(ValueError, match=r"outside the 7x14 frame .*check from_size=\(height, width\)"):
        scale_box((0, 8, 13, 9), (7, 14), (224, 448))
    with pytest.raises(TypeError, match=r"from_size must be \(height, width\), two integers >= 1"):
        scale_box((0, 0, 1, 1), 7, (224, 224))
    with pytest.raises(ValueError, match=r"to_size\[0\] \(height\) must be an integer >= 1"):
        scale_box((0, 0, 1, 1), (7, 7), (0, 224))
    assert scale_box(NO_BOX, (7, 7), (224, 224)) is None


def test_box_iou_of_unpaired_lists_names_the_counts():
    with pytest.raises(ValueError, match=r"a holds \(3,\) boxes and b \(2,\): pair them one to one"):
        box_iou(np.zeros((3, 4)), np.zeros((2, 4)))
    assert box_iou(np.array([[0, 0, 1, 1], [0, 0, 3, 3]]), (0, 0, 1, 1)).tolist() == [1.0, 0.25]


def test_maps_and_boxes_in_different_frames_are_refused_by_every_score():
    """7 × 7 maps against 224-pixel boxes: before, 0.0 on every metric and no word."""
    from helpers.evaluate.localization import localization_report, max_box_accuracy, pointing_game

    maps = np.random.default_rng(0).uniform(0, 1, (2, 7, 7))
    boxes = np.array([[10, 20, 150, 200], [0, 0, 223, 223]])
    for score in (pointing_game, max_box_accuracy, localization_report):
        with pytest.raises(ValueError, match=r"true box 0 \(10, 20, 150, 200\) lies outside the "
                                             r"7 × 7 maps.*scale_box"):
            score(maps, boxes)
    inside = np.array([[1, 2, 5, 6], [0, 0, 6, 6]])
    assert 0 <= pointing_game(maps, inside) <= 1


def test_a_map_with_no_peak_points_nowhere():
    """An all-zero map's argmax is pixel (0, 0): before, a hit for a box in the corner."""
    from helpers.evaluate.localization import pointing_game

    maps = np.zeros((2, 8, 8))
    maps[1, 1, 1] = 1.0
    corner = np.array([[0, 0, 3, 3], [0, 0, 3, 3]])
    assert pointing_game(maps, corner, tolerance=0) == 0.5
