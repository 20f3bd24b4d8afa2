"""WIDER FACE data: the official files and ground truth (:mod:`.wider_face_format`), their
conversion to COCO JSON (:mod:`.wider_face`), dataset registration (:mod:`.datasets`) and the
training/test mapper with the face augmentation (:mod:`.mapper`, :mod:`.augmentations`,
:mod:`.deferred_render`)."""

from . import datasets  # noqa: F401  (registers the WIDER FACE datasets)
from .mapper import FaceDatasetMapper  # noqa: F401
