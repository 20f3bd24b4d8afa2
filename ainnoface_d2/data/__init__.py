"""WIDER FACE data: annotation conversion (:mod:`.wider_face`), dataset registration
(:mod:`.datasets`) and the training/test mapper with the face augmentation (:mod:`.mapper`,
:mod:`.augmentations`)."""

from . import datasets  # noqa: F401  (registers the WIDER FACE datasets)
from .mapper import FaceDatasetMapper  # noqa: F401
