"""A small built-in face dataset made of real faces, written in exactly the WIDER FACE layout.

WIDER FACE (Yang et al., CVPR 2016) is large and has to be downloaded by hand, so tests, CI and the
quickstart use this stand-in instead. It is generated deterministically from a seed, in seconds,
out of data that ships inside the scikit-image wheel (no network; scikit-image is the ``builtin``
extra of this package, and ``import ainnoface_d2`` does not import this subpackage):

* faces: ``skimage.data.lfw_subset()``, 200 grayscale 25x25 crops from Labeled Faces in the Wild
  (Huang et al.): faces 0-69 go to train, 70-99 to val (and test); the non-faces are pasted as
  unannotated distractors (100-169 in train, 170-199 in val/test), except the few that show part
  of a face (:mod:`.sources`);
* backgrounds: random crops of CC0 / public-domain scikit-image sample photos.

Faces are pasted at WIDER-like scales (many 6-32 px faces in "1--Crowd", a mix in "0--Synthetic",
a few 60-200 px faces in "2--Portrait"), colourised with a skin tone, contrast/brightness
jittered, sometimes blurred or partly covered, and blended with a feathered rectangular or oval
alpha mask so that a sharp square border does not give them away (:mod:`.render`).

Modules: :mod:`.records` (what is recorded, the evaluation-settings rule), :mod:`.sources`,
:mod:`.render`, :mod:`.writers` (the WIDER FACE files), :mod:`.build` (the entry point).

What is written under ``root`` (the official layout, as in the WIDER FACE downloads):

* ``WIDER_{train,val,test}/images/<n>--<Event>/<n>_<Event>_<k>.jpg`` (cv2, JPEG quality 90);
* ``wider_face_split/wider_face_{train,val}_bbx_gt.txt``: per image the path, the box count, then
  ``x y w h blur expression illumination invalid occlusion pose `` lines (trailing space). A
  faceless image is written as count ``0`` plus one all-zero line in train, and as count ``1``
  plus that line in val, like the official files;
* ``wider_face_split/wider_face_{train,val,test}.mat``, ``wider_face_test_filelist.txt``;
* ``eval_tools/ground_truth/wider_face_val.mat`` and ``wider_{easy,medium,hard}_val.mat`` with the
  same keys, nesting and dtypes as the official files (cells ``(n, 1)``, int32 ``Nx4`` boxes,
  uint8 ``Nx1`` labels, ``gt_list`` 1-based uint8/uint16 columns, an empty ``gt_list`` entry is
  ``(0, 0)`` for a one-box image and ``(0, 1)`` otherwise, as MATLAB wrote them).

Attributes (WIDER ``readme.txt`` meanings), from what the generator did to each face of box
height ``h``:

* blur: 2 if the 25x25 source was blurred with sigma >= 1.2 or ``h < 12``; else 1 if it was
  blurred at all, ``h < 24`` or ``h > 150`` (a 25 px source upsampled 6x is soft); else 0;
* illumination: 1 if the brightness gain is below 0.65 (a dark face), else 0;
* occlusion: 1 if 10-30 % of the box is covered by a background patch, 2 if more;
  invalid: 1 for the few faces covered 60-80 % (kept in the txt, ignored by the evaluation);
* expression, pose: always 0 (the LFW crops are frontal with ordinary expressions).

Evaluation settings (WIDER picks them by EdgeBox detection rate; the official Hard/Medium/Easy
sets keep boxes of height >= 9 / 16 / 34 px, so the same idea is written here as size rules):

* hard: ``invalid == 0`` and ``h >= 8``;
* medium: hard and ``h >= 16`` and ``occlusion <= 1``;
* easy: medium and ``h >= 32`` and ``blur <= 1`` and ``occlusion == 0``.

So Easy ⊆ Medium ⊆ Hard holds image by image; the faces that no setting keeps (faces under 8 px,
invalid ones, the dummy box of a faceless image) are "ignore" regions during evaluation.

A stamp file ``builtin_faces_stamp.json`` records the generator version, seed and image counts;
:func:`build_builtin_faces` skips the work when the stamp matches and rebuilds otherwise.
"""

from .build import STAMP_NAME, build_builtin_faces, default_root
from .records import (
    EVENTS,
    GENERATOR_VERSION,
    SPLITS,
    BuildSummary,
    FaceRecord,
    ImageRecord,
    eval_settings,
)
from .render import render_image
from .sources import load_backgrounds, load_face_crops

__all__ = [
    "GENERATOR_VERSION",
    "EVENTS",
    "SPLITS",
    "STAMP_NAME",
    "BuildSummary",
    "FaceRecord",
    "ImageRecord",
    "build_builtin_faces",
    "default_root",
    "eval_settings",
    "load_backgrounds",
    "load_face_crops",
    "render_image",
]
