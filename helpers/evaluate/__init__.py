"""Evaluating maps: boxes against true boxes (notebook 04), and which map to trust (notebook 06).

* :mod:`~helpers.evaluate.boxes`: a box from a map, IoU, rescaling a box;
* :mod:`~helpers.evaluate.max_box`: MaxBoxAcc(V2) under Choe et al.'s protocol or Zhou's rule;
* :mod:`~helpers.evaluate.localization`: accuracy, the pointing game, a report;
* :mod:`~helpers.evaluate.trust`: sanity checks (layer randomisation) and deletion/insertion;
* :mod:`~helpers.evaluate.road`: ROAD, removal with noisy linear imputation (MoRF and LeRF).
"""
