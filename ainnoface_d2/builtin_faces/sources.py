"""The inputs of the built-in face generator, all shipped inside the scikit-image wheel.

* faces: ``skimage.data.lfw_subset()``, 200 grayscale 25x25 crops from Labeled Faces in the Wild
  (Huang et al.); its docstring says the first 100 are faces and the last 100 are non-faces cut
  from the background of the same photos.
* backgrounds: the CC0 / public-domain sample photos named below. ``astronaut``, ``camera``,
  ``chelsea``/``cat`` and ``coins`` are left out on purpose: they show faces (coins: profile heads)
  that nobody annotated, and ``astronaut`` and ``camera`` belong to the real-photo check set
  (``datasets/real_photos``), which must stay out of training.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = [
    "FACE_RANGE",
    "NON_FACE_RANGE",
    "PARTIAL_FACE_NON_FACES",
    "SKIN_TONES",
    "load_face_crops",
    "load_backgrounds",
]

# LFW indices: which faces / non-faces each split may use (val and test share, test has no GT).
FACE_RANGE = {"train": range(0, 70), "val": range(70, 100), "test": range(70, 100)}
NON_FACE_RANGE = {"train": range(100, 170), "val": range(170, 200), "test": range(170, 200)}
# Non-face crops that show an eye, eyes or a mouth (checked by eye): unannotated partial faces
# would teach the detector that face parts are background, so they are not used as distractors.
PARTIAL_FACE_NON_FACES = frozenset({114, 124, 125, 130, 180, 196})

_COLOUR_BACKGROUNDS = ("coffee", "rocket", "hubble_deep_field", "immunohistochemistry")
_GRAY_BACKGROUNDS = ("brick", "grass", "gravel", "moon")
# Skin tones (RGB, 0-255) from light to dark, used to colourise the grayscale LFW faces.
SKIN_TONES = np.array(
    [
        [255, 224, 196],
        [241, 194, 125],
        [224, 172, 105],
        [198, 134, 66],
        [141, 85, 36],
        [96, 60, 32],
    ],
    dtype=np.float32,
)
# The files that skimage.data reads for the sources above; all ship in the wheel.
_SKIMAGE_FILES = (
    "lfw_subset.npy",
    "brick.png",
    "grass.png",
    "gravel.png",
    "moon.png",
    "coffee.png",
    "rocket.jpg",
    "hubble_deep_field.jpg",
    "ihc.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "motorcycle_disp.npz",
)


def _check_skimage_files() -> None:
    try:
        import skimage.data
    except ImportError as e:
        raise ImportError(
            "the built-in face dataset is made from scikit-image's sample data: "
            "pip install 'ainnoface_d2[builtin]' (or scikit-image>=0.19)"
        ) from e

    missing = [
        f for f in _SKIMAGE_FILES if not os.path.isfile(os.path.join(skimage.data.data_dir, f))
    ]
    if missing:
        # skimage would try to download them; this generator must work offline.
        raise FileNotFoundError(
            f"scikit-image {skimage.__version__} does not ship {missing} in "
            f"{skimage.data.data_dir}; "
            "the built-in face dataset needs the sample images of the scikit-image wheel "
            "(tested with scikit-image 0.26)."
        )


def load_face_crops() -> np.ndarray:
    """``skimage.data.lfw_subset()`` as float32 in [0, 1], shape (200, 25, 25)."""
    _check_skimage_files()
    import skimage.data

    crops = np.asarray(skimage.data.lfw_subset(), dtype=np.float32)
    if crops.shape != (200, 25, 25):
        raise ValueError(
            f"skimage.data.lfw_subset() has shape {crops.shape}, expected (200, 25, 25)"
        )
    return crops


def load_backgrounds() -> list[np.ndarray]:
    """The background photos as float32 in [0, 1]: RGB, or a single channel for grayscale ones."""
    _check_skimage_files()
    import skimage.data

    images = []
    for name in _COLOUR_BACKGROUNDS + _GRAY_BACKGROUNDS:
        images.append(getattr(skimage.data, name)())
    images.append(skimage.data.stereo_motorcycle()[0])
    out = []
    for im in images:
        im = np.asarray(im)
        if im.ndim == 3:
            im = im[..., :3]
        out.append(im.astype(np.float32) / 255.0)
    return out
