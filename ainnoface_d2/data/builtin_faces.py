"""The built-in face dataset generator, at its former import path.

The generator lives in :mod:`ainnoface_d2.builtin_faces` (it needs scikit-image, the
``builtin`` extra); this module re-exports its public names so that existing imports keep working.
"""

from ..builtin_faces import *  # noqa: F403
from ..builtin_faces import __all__  # noqa: F401
