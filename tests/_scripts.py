"""Load one of the repository's scripts (``tools/*.py``, ``datasets/*.py``) as a module, so that a
test can call its ``main``/``get_parser`` or read its constants directly."""

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_script(relative_path, name=None):
    """A fresh module of ``REPO/relative_path`` (e.g. ``"tools/demo.py"``), named ``name`` or after
    the file."""
    path = REPO / relative_path
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
