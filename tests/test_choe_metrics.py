"""Choe et al.'s MaxBoxAcc and MaxBoxAccV2 (clovaai/wsolevaluation) on hand-made maps with known
answers, and against a line-by-line re-implementation of their evaluation loop."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from helpers.evaluate.boxes import choe_boxes
from helpers.evaluate.localization import localization_report, pointing_game, zhou_accuracy
from helpers.evaluate.max_box import max_box_accuracy

# Also run under KERAS_BACKEND=jax (make test-jax).
pytestmark = pytest.mark.jax


def _blob_map(size, *blobs):
    """``blobs``: (row0, row1, col0, col1, value), half-open ranges."""
    cam = np.zeros(size)
    for r0, r1, c0, c1, value in blobs:
        cam[r0:r1, c0:c1] = value
    return cam


def test_boxes_are_one_pixel_wider_and_taller_as_cv2_bounding_rect_plus_w():
    cam = _blob_map((12, 12), (2, 5, 3, 8, 1.0))  # rows 2..4, columns 3..7
    boxes = choe_boxes(cam, [0.5])
    np.testing.assert_array_equal(boxes[0], [[3, 2, 8, 5]])  # x + w = 3 + 5, y + h = 2 + 3
    edge = _blob_map((6, 6), (3, 6, 4, 6, 1.0))  # touches the bottom-right corner
    np.testing.assert_array_equal(choe_boxes(edge, [0.5])[0], [[4, 3, 5, 5]])  # clipped to W-1


def test_multi_contour_picks_the_region_that_matches_not_the_largest():
    cam = _blob_map((20, 20), (0, 8, 0, 8, 1.0), (12, 15, 12, 15, 0.8))  # 64 px vs 9 px
    truth = np.array([[12, 12, 15, 15]])  # the small blob's Choe box: (12, 12, 14 + 1, 14 + 1)
    boxes = choe_boxes(cam, [0.5])[0]
    assert sorted(map(tuple, boxes)) == [(0, 0, 8, 8), (12, 12, 15, 15)]
    result = max_box_accuracy(cam[None], truth)
    assert result.best == 1.0 and result.best_threshold == 0.0
    # Above 0.8 only the large blob is left; Zhou's largest region never finds the small one.
    assert result.accuracies[np.flatnonzero(result.thresholds >= 0.8)].max() == 0.0
    assert max_box_accuracy(cam[None], truth, protocol="zhou").best == 0.0


def test_a_hole_has_its_own_contour_and_box():
    """cv2.findContours(RETR_TREE) also returns the border around a hole (on the ones next to
    it): its box is the hole's grown by one pixel, then one more at the right and bottom."""
    cam = _blob_map((12, 12), (2, 10, 2, 10, 1.0))
    cam[4:8, 4:8] = 0.0  # a 4 x 4 hole, rows and columns 4..7
    boxes = sorted(map(tuple, choe_boxes(cam, [0.5])[0]))
    assert boxes == [(2, 2, 10, 10), (3, 3, 9, 9)]
    assert max_box_accuracy(cam[None], np.array([[3, 3, 9, 9]])).best == 1.0
    touching = _blob_map((6, 6), (0, 6, 0, 6, 1.0))
    touching[0:2, 2:4] = 0.0  # zeros on the edge are outside, not a hole
    assert choe_boxes(touching, [0.5])[0].tolist() == [[0, 0, 5, 5]]


def test_min_max_normalisation_moves_the_best_threshold():
    """A blob of 11 on a floor of 10: as a fraction of the maximum (Zhou) the floor is kept up to
    tau = 10/11, so the first right box is at 0.95; min-max normalised (Choe) the floor is 0 and
    the blob alone is kept from tau = 0."""
    cam = np.full((16, 16), 10.0)
    cam[5:9, 5:9] = 11.0
    truth = np.array([[5, 5, 9, 9]])  # Choe's box of rows/columns 5..8
    choe = max_box_accuracy(cam[None], truth)
    zhou = max_box_accuracy(cam[None], np.array([[5, 5, 8, 8]]), protocol="zhou")
    assert (choe.best, choe.best_threshold) == (1.0, 0.0)
    assert (zhou.best, zhou.best_threshold) == (1.0, 0.95)
    assert zhou.accuracies[:-1].max() == 0.0


def test_a_constant_map_gives_the_one_pixel_box_at_the_origin():
    """normalize_scoremap makes it all zeros; no pixel is > int(tau * 0) = 0, no contour, and
    their code returns the box [0, 0, 0, 0]: one pixel, IoU 1/4 with (0, 0, 1, 1)."""
    cams = np.full((1, 8, 8), 3.0)
    assert all(b.tolist() == [[0, 0, 0, 0]] for b in choe_boxes(cams[0]))
    truth = np.array([[0, 0, 1, 1]])
    assert max_box_accuracy(cams, truth, 0.25).best == 1.0
    assert max_box_accuracy(cams, truth, 0.26).best == 0.0


def test_max_box_acc_v2_by_hand_and_top1():
    """Image 0: IoU 1 at every tau. Image 1: its box (0, 0, 4, 4), 25 px, holds the 10-px true box
    (0, 0, 4, 1): IoU 0.4. So MaxBoxAcc is 1 at IoU 0.3, 1/2 at 0.5 and 0.7: V2 = 2/3."""
    cams = np.stack([_blob_map((12, 12), (2, 6, 2, 6, 1.0)), _blob_map((12, 12), (0, 4, 0, 4, 2.0))])
    truth = np.array([[2, 2, 6, 6], [0, 0, 4, 1]])
    v2 = max_box_accuracy(cams, truth, (0.3, 0.5, 0.7))
    assert v2.best == pytest.approx(2 / 3)
    np.testing.assert_array_equal(v2.best_per_iou, [1.0, 0.5, 0.5])
    assert v2.accuracies.shape == (3, 100) and np.isnan(v2.best_threshold)
    np.testing.assert_array_equal(v2.best_thresholds, [0.0, 0.0, 0.0])
    assert v2.label == "MaxBoxAccV2 (choe, IoU 0.3/0.5/0.7)" and not v2.top1
    top1 = max_box_accuracy(cams, truth, (0.3, 0.5, 0.7), correct_class=np.array([False, True]))
    np.testing.assert_array_equal(top1.best_per_iou, [0.5, 0.0, 0.0])
    assert top1.best == pytest.approx(1 / 6) and top1.label.startswith("top-1 MaxBoxAccV2")
    single = max_box_accuracy(cams, truth, 0.3)
    assert single.best == 1.0 and single.accuracies.shape == (100,) and single.best_threshold == 0.0


# -- wsolevaluation's loop, line by line ---------------------------------------------------------


def _normalize_scoremap(cam):  # inference.py
    cam = cam.copy()
    if np.isnan(cam).any():
        return np.zeros_like(cam)
    if cam.min() == cam.max():
        return np.zeros_like(cam)
    cam -= cam.min()
    cam /= cam.max()
    return cam


def _find_contours_bounding_rects(binary):
    """cv2.findContours(RETR_TREE) + cv2.boundingRect, as (x, y, w, h): outer borders of the
    8-connected regions, and the border around each hole (zeros not 4-connected to the edge)."""
    rects = []
    labels, count = ndimage.label(binary > 0, structure=np.ones((3, 3)))
    for index in range(1, count + 1):
        rows, cols = np.nonzero(labels == index)
        rects.append((cols.min(), rows.min(), cols.max() - cols.min() + 1,
                      rows.max() - rows.min() + 1))
    zeros, count = ndimage.label(binary == 0)
    edge = set(np.unique(np.concatenate([zeros[0], zeros[-1], zeros[:, 0], zeros[:, -1]])))
    for index in range(1, count + 1):
        if index in edge:
            continue
        rows, cols = np.nonzero(zeros == index)
        rects.append((cols.min() - 1, rows.min() - 1, cols.max() - cols.min() + 3,
                      rows.max() - rows.min() + 3))
    return rects


def _compute_bboxes_from_scoremaps(scoremap, scoremap_threshold_list):  # multi_contour_eval=True
    height, width = scoremap.shape
    scoremap_image = np.expand_dims((scoremap * 255).astype(np.uint8), 2)

    def scoremap2bbox(threshold):
        thresh = int(threshold * np.max(scoremap_image))
        thr_gray_heatmap = np.where(scoremap_image[..., 0] > thresh, 255, 0)  # THRESH_BINARY
        contours = _find_contours_bounding_rects(thr_gray_heatmap)
        if len(contours) == 0:
            return np.asarray([[0, 0, 0, 0]]), 1
        estimated_boxes = []
        for x, y, w, h in contours:
            x0, y0, x1, y1 = x, y, x + w, y + h
            x1 = min(x1, width - 1)
            y1 = min(y1, height - 1)
            estimated_boxes.append([x0, y0, x1, y1])
        return np.asarray(estimated_boxes), len(contours)

    estimated_boxes_at_each_thr, number_of_box_list = [], []
    for threshold in scoremap_threshold_list:
        boxes, number_of_box = scoremap2bbox(threshold)
        estimated_boxes_at_each_thr.append(boxes)
        number_of_box_list.append(number_of_box)
    return estimated_boxes_at_each_thr, number_of_box_list


def _calculate_multiple_iou(box_a, box_b):
    num_a, num_b = box_a.shape[0], box_b.shape[0]
    box_a = np.expand_dims(np.tile(box_a, num_b), axis=1).reshape((num_a, num_b, -1))
    box_b = np.expand_dims(np.tile(box_b, num_a), axis=1).reshape((num_b, num_a, -1))
    box_b = np.transpose(box_b, (1, 0, 2))
    min_x = np.maximum(box_a[:, :, 0], box_b[:, :, 0])
    min_y = np.maximum(box_a[:, :, 1], box_b[:, :, 1])
    max_x = np.minimum(box_a[:, :, 2], box_b[:, :, 2])
    max_y = np.minimum(box_a[:, :, 3], box_b[:, :, 3])
    area_intersect = np.maximum(0, max_x - min_x + 1) * np.maximum(0, max_y - min_y + 1)
    area_a = (box_a[:, :, 2] - box_a[:, :, 0] + 1) * (box_a[:, :, 3] - box_a[:, :, 1] + 1)
    area_b = (box_b[:, :, 2] - box_b[:, :, 0] + 1) * (box_b[:, :, 3] - box_b[:, :, 1] + 1)
    denominator = (area_a + area_b - area_intersect).astype(float)
    degenerate_indices = np.where(denominator <= 0)
    denominator[degenerate_indices] = 1
    ious = area_intersect / denominator
    ious[degenerate_indices] = 0
    return ious


def _box_evaluator(cams, gt_boxes, iou_threshold_list=(30, 50, 70)):
    """BoxEvaluator.accumulate over every map, then compute(): per-IoU curves and MaxBoxAcc."""
    cam_threshold_list = list(np.arange(0, 1, 0.01))
    num_correct = {t: np.zeros(len(cam_threshold_list)) for t in iou_threshold_list}
    cnt = 0
    for cam, gt in zip(cams, gt_boxes):
        scoremap = _normalize_scoremap(cam.astype(float))
        boxes_at_thresholds, number_of_box_list = _compute_bboxes_from_scoremaps(
            scoremap, cam_threshold_list)
        boxes_at_thresholds = np.concatenate(boxes_at_thresholds, axis=0)
        multiple_iou = _calculate_multiple_iou(np.array(boxes_at_thresholds), np.array([gt]))
        idx = 0
        sliced_multiple_iou = []
        for nr_box in number_of_box_list:
            sliced_multiple_iou.append(max(multiple_iou.max(1)[idx:idx + nr_box]))
            idx += nr_box
        for threshold in iou_threshold_list:
            correct = np.where(np.asarray(sliced_multiple_iou) >= (threshold / 100))[0]
            num_correct[threshold][correct] += 1
        cnt += 1
    curves = {t: num_correct[t] * 100. / float(cnt) for t in iou_threshold_list}
    return curves, [curves[t].max() for t in iou_threshold_list]


def test_equals_wsolevaluation_loop_on_random_maps():
    rng = np.random.default_rng(3)
    count = 24
    # Smoothed noise: several regions, holes and ties at most thresholds.
    cams = ndimage.gaussian_filter(rng.normal(size=(count, 20, 24)), (0, 1.2, 1.2))
    cams[0] = 5.0  # a constant map
    cams[1, :, :] = 0.0
    cams[1, 3:15, 3:15], cams[1, 6:10, 6:10] = 1.0, 0.0  # a ring
    x0, y0 = rng.integers(0, 14, count), rng.integers(0, 12, count)
    truth = np.stack([x0, y0, x0 + rng.integers(1, 10, count), y0 + rng.integers(1, 8, count)], 1)
    truth[1] = (5, 5, 11, 11)  # the ring's hole box
    curves, best = _box_evaluator(cams, truth)
    ours = max_box_accuracy(cams, truth, (0.3, 0.5, 0.7))
    for row, delta in enumerate((30, 50, 70)):
        np.testing.assert_allclose(ours.accuracies[row] * 100, curves[delta], rtol=0, atol=1e-9)
    assert ours.best * 100 == pytest.approx(np.mean(best), abs=1e-9)
    assert 0 < ours.best < 1 and len(set(ours.accuracies[0])) > 3, "a case that discriminates"
    single = max_box_accuracy(cams, truth)
    assert single.best * 100 == pytest.approx(best[1], abs=1e-9)


# -- Zhou's rule keeps its name; the report names its protocol ----------------------------------


def test_zhou_accuracy_is_the_reports_fixed_threshold_score():
    cams = np.stack([_blob_map((10, 10), (2, 6, 2, 6, 1.0)), _blob_map((10, 10), (0, 2, 0, 2, 1.0))])
    truth = np.array([[2, 2, 5, 5]] * 2)
    assert zhou_accuracy(cams, truth) == 0.5
    assert zhou_accuracy(cams, truth, correct_class=np.array([False, True])) == 0.0
    report = localization_report(cams, truth, protocol="choe", max_box_iou=(0.3, 0.5, 0.7),
                                 pointing_tolerance=15)
    assert report.gt_known == zhou_accuracy(cams, truth)
    summary = report.summary()
    assert "MaxBoxAccV2 (choe)" in summary and "pointing game (15 px)" in summary
    assert report.max_box.protocol == "choe" and report.max_box.iou_thresholds == (0.3, 0.5, 0.7)
    assert report.pointing == pointing_game(cams, truth, tolerance=15) == 1.0
    default = localization_report(cams, truth)  # the field's defaults: Choe's V2, 15 px
    assert default.max_box.best == report.max_box.best and default.pointing == report.pointing
    np.testing.assert_array_equal(default.max_box.accuracies, report.max_box.accuracies)
    assert list(default.summary()) == list(summary)  # the same names (NaN != NaN as values)
    old_rules = localization_report(cams, truth, protocol="zhou", pointing_tolerance=0)
    assert old_rules.pointing == 0.5 and old_rules.max_box.iou_thresholds == (0.5,)
    assert "MaxBoxAcc (zhou)" in old_rules.summary() and "pointing game" in old_rules.summary()


def test_a_choe_sweep_is_the_best_of_choe_boxes_at_each_threshold():
    # The batched sweep (one IoU call per map, holes traced only where the Euler number shows
    # them) against choe_boxes read box by box, on smooth maps, noisy maps with holes, a ring
    # and a constant map.
    from helpers.evaluate.boxes import CHOE_THRESHOLDS, box_iou, choe_boxes
    rng = np.random.default_rng(0)
    ring = np.zeros((12, 12))
    ring[2:9, 2:9], ring[4:7, 4:7] = 1.0, 0.0
    cams = np.concatenate([rng.normal(size=(6, 12, 12)),
                           np.kron(rng.normal(size=(6, 4, 4)), np.ones((3, 3))),
                           ring[None], np.zeros((1, 12, 12))])
    truth = np.concatenate([rng.integers(0, 5, (len(cams), 2)), rng.integers(6, 12, (len(cams), 2))],
                           axis=1)
    best = np.array([[np.max(box_iou(boxes, truth[n])) for boxes in choe_boxes(cam)]
                     for n, cam in enumerate(cams)]).T  # (T, N)
    result = max_box_accuracy(cams, truth, (0.3, 0.5, 0.7))
    expected = np.stack([(best >= iou).mean(axis=1) for iou in (0.3, 0.5, 0.7)])
    np.testing.assert_array_equal(result.accuracies, expected)
    assert len(CHOE_THRESHOLDS) == expected.shape[1]


def test_pointing_tolerance_is_a_euclidean_distance_to_the_box():
    cams = np.zeros((3, 40, 60))
    cams[0, 10, 35] = 1.0  # 15 columns right of the box's last column: distance 15
    cams[1, 10, 36] = 1.0  # 16
    cams[2, 29, 32] = 1.0  # (12, 9) from the corner (20, 20): distance 15
    truth = np.array([[5, 5, 20, 20]] * 3)
    assert pointing_game(cams, truth) == pytest.approx(2 / 3)
    assert pointing_game(cams, truth, tolerance=16) == 1.0
    assert pointing_game(cams, truth, tolerance=14) == 0.0


# -- bad input ----------------------------------------------------------------------------------


def test_arguments_are_checked_with_what_is_accepted():
    cams, truth = np.ones((2, 8, 8)), np.array([[0, 0, 3, 3]] * 2)
    with pytest.raises(ValueError, match=r"protocol must be one of \['choe', 'zhou'\], got 'Choe'"):
        max_box_accuracy(cams, truth, protocol="Choe")
    with pytest.raises(ValueError, match="protocol must be one of"):
        localization_report(cams, truth, protocol="wsol")
    for bad in ((0.3, 0.0), (0.5, 1.5), (0.5, float("nan"))):
        with pytest.raises(ValueError, match=r"iou_threshold must be a finite number in \(0, 1\]"):
            max_box_accuracy(cams, truth, bad)
    with pytest.raises(ValueError, match="got a list .*box thresholds go in thresholds="):
        max_box_accuracy(cams, truth, [0.1, 0.35, 0.6])
    with pytest.raises(ValueError, match="empty sequence"):
        max_box_accuracy(cams, truth, ())
    nan = cams.copy()
    nan[1, 2, 2] = np.nan
    for protocol in ("choe", "zhou"):
        with pytest.raises(ValueError, match="NaN or infinite"):
            max_box_accuracy(nan, truth, protocol=protocol)
    with pytest.raises(ValueError, match=r"true_boxes must be \(N, 4\) for 2 maps"):
        max_box_accuracy(cams, truth[:1])
    with pytest.raises(TypeError, match=r"correct_class must be \(2,\) booleans"):
        max_box_accuracy(cams, truth, correct_class=[1, 0])
    with pytest.raises(ValueError, match=r"thresholds must be fractions in \[0, 1\]"):
        max_box_accuracy(cams, truth, thresholds=[0.5, 1.5])
    with pytest.raises(ValueError, match=r"pointing_tolerance \(pixels\) must be an integer >= 0"):
        localization_report(cams, truth, pointing_tolerance=-1)
