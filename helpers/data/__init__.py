"""Data: sample photos, your own photos, and the two synthetic sets with true boxes.

* :mod:`~helpers.data.samples`: photos that ship inside scikit-image and scikit-learn;
* :mod:`~helpers.data.files`: your own photos read from files or uploads;
* :mod:`~helpers.data.digits`: digit canvases with true boxes (notebooks 02, 04);
* :mod:`~helpers.data.composites`: photo composites, an object pasted on a background
  (notebook 05);
* :mod:`~helpers.data.records`: the recorded runs the notebooks read (:func:`recorded`).
"""

from helpers.data.files import IMAGE_SUFFIXES, load_image, load_images
from helpers.data.records import recorded
from helpers.data.samples import SAMPLE_IMAGE_NAMES, sample_image, sample_images

__all__ = ["IMAGE_SUFFIXES", "SAMPLE_IMAGE_NAMES", "load_image", "load_images", "recorded", "sample_image",
           "sample_images"]
