"""WIDER FACE data: the official files and ground truth (:mod:`.wider_face_format`), their
conversion to COCO JSON (:mod:`.wider_face`), dataset registration (:mod:`.datasets`), datasets of
one's own in COCO, YOLO, Pascal VOC or WIDER FACE layouts (:mod:`.face_formats`,
:mod:`.own_datasets`) and the training/test mapper with the face augmentation (:mod:`.mapper`,
:mod:`.augmentations`, :mod:`.deferred_render`)."""

# Registration: the WIDER FACE layout datasets, then those of datasets/prepare_faces.py.
from . import datasets, own_datasets  # noqa: F401
from .mapper import FaceDatasetMapper  # noqa: F401
