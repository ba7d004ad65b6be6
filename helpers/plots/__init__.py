"""Figures: CAM overlays (notebook 03), localisation figures (notebook 04), the explorer widget.

* :mod:`~helpers.plots.cam`: a map over its photo, several classes, several photos;
* :mod:`~helpers.plots.localization`: threshold sweeps and galleries of boxes;
* :mod:`~helpers.plots.explorer`: the ipywidgets explorer with class and threshold sliders.
"""
