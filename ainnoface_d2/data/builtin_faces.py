"""The built-in face dataset generator, at its former import path.

The generator lives in :mod:`ainnoface_d2.builtin_faces` (it needs scikit-image, the
``builtin`` extra); this module re-exports it so that existing imports keep working.
"""

from ..builtin_faces import (  # noqa: F401
    EVENTS,
    GENERATOR_VERSION,
    SPLITS,
    STAMP_NAME,
    BuildSummary,
    FaceRecord,
    ImageRecord,
    build_builtin_faces,
    default_root,
    eval_settings,
    load_backgrounds,
    load_face_crops,
    render_image,
)

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
