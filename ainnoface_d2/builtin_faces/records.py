"""What the built-in face generator records about each image and face, and the Easy / Medium /
Hard rule that turns those records into WIDER FACE evaluation settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..data.wider_face_format import SPLITS

__all__ = [
    "GENERATOR_VERSION",
    "EVENTS",
    "SCENE_EVENTS",
    "PHOTO_EVENT",
    "SPLITS",
    "FaceRecord",
    "ImageRecord",
    "BuildSummary",
    "eval_settings",
]

# Bump whenever the output for a given seed changes, so old stamps no longer match.
GENERATOR_VERSION = 1
# Events (WIDER's "<n>--<Name>" folders): what kind of scene an image is, see render.py.
# "3--Photo" (train only, when the build is given photos): real photographs, see photos.py.
EVENTS = ("0--Synthetic", "1--Crowd", "2--Portrait", "3--Photo")
SCENE_EVENTS = EVENTS[:3]
PHOTO_EVENT = EVENTS[3]


@dataclass
class FaceRecord:
    """One pasted face: its box ``[x, y, w, h]`` (0-based pixels) and WIDER attributes."""

    box: tuple[int, int, int, int]
    source_index: int  # index into skimage.data.lfw_subset(), or 1000 + k for photo face k
    blur: int
    expression: int
    illumination: int
    invalid: int
    occlusion: int
    pose: int
    # The part of the box covered by an occluder, [x, y, w, h], or None.
    occluder: tuple[int, int, int, int] | None = None

    @property
    def labels(self) -> tuple[int, int, int, int, int, int]:
        return (
            self.blur,
            self.expression,
            self.illumination,
            self.invalid,
            self.occlusion,
            self.pose,
        )


@dataclass
class ImageRecord:
    """One generated image and everything pasted into it."""

    split: str
    event: str
    name: str  # without ".jpg"
    width: int
    height: int
    faces: list[FaceRecord] = field(default_factory=list)
    # Unannotated non-face crops: ([x, y, w, h], lfw index).
    distractors: list[tuple[tuple[int, int, int, int], int]] = field(default_factory=list)

    @property
    def file_name(self) -> str:
        return f"{self.event}/{self.name}.jpg"


@dataclass
class BuildSummary:
    root: Path
    built: bool  # False when an up-to-date dataset was found and left alone
    seed: int
    num_images: dict[str, int]
    num_faces: dict[str, int]
    num_bytes: int
    seconds: float
    # Per split, the metadata of every image (empty when nothing was built).
    images: dict[str, list[ImageRecord]] = field(default_factory=dict)


def eval_settings(face: FaceRecord) -> tuple[bool, bool, bool]:
    """(easy, medium, hard) membership of a face; see the package docstring for the rule."""
    h = face.box[3]
    hard = face.invalid == 0 and h >= 8
    medium = hard and h >= 16 and face.occlusion <= 1
    easy = medium and h >= 32 and face.blur <= 1 and face.occlusion == 0
    return easy, medium, hard
