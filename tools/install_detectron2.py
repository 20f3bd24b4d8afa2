#!/usr/bin/env python
"""Install Detectron2 v0.6 (pure Python) from PyPI when no Detectron2 is installed.

Detectron2 is not published on PyPI by its authors. The sdist ``pb1-detectron2==0.6`` holds
upstream v0.6's Python code byte for byte, but not ``detectron2/layers/csrc``, so its own
``setup.py`` cannot build and ``pip install pb1-detectron2`` fails. This script:

1. does nothing if ``import detectron2`` already works (for example an upstream build from
   source, with its compiled ``detectron2._C``): that installation is used untouched;
2. otherwise downloads the sdist from the package index that pip is configured to use (PEP 503
   "simple" API; ``pip download`` cannot be used because current pip rejects the sdist's
   metadata, which names a direct-URL extra), checks its sha256, and installs it with the C++
   extension list emptied, the obsolete ``black==21.4b2`` pin dropped (black is only used to
   pretty-print LazyConfig files, and that version does not run on current Python), and the
   model-zoo configs moved to where its ``setup.py`` looks for them (so that
   ``detectron2.model_zoo`` works).

What the compiled ops would have provided (rotated boxes, deformable convolution, the fast
COCOeval) is not used by AInnoFace; ``ainnoface_d2.compat`` makes the missing pieces fail with a
clear message instead of an ImportError at import time.

Usage: python tools/install_detectron2.py [--force]
"""

import argparse
import hashlib
import importlib.util
import os
import re
import subprocess
import sys
import tarfile
import tempfile

SDIST_NAME = "pb1-detectron2"
SDIST_VERSION = "0.6"
SDIST_FILE = f"{SDIST_NAME}-{SDIST_VERSION}.tar.gz"
SDIST_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pip(*args):
    cmd = [sys.executable, "-m", "pip", *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.check_call(cmd)


def _package_files():
    """``ainnoface_d2/builtin_faces/package_files.py`` loaded from its file (it needs only the
    standard library): this script runs before the package, and the Detectron2 it imports, are
    installed."""
    path = os.path.join(REPO, "ainnoface_d2", "builtin_faces", "package_files.py")
    spec = importlib.util.spec_from_file_location("_ainnoface_package_files", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def download_sdist(dest):
    """The sdist from the index pip uses, fetched from its simple page (not with pip)."""
    requirement = f"{SDIST_NAME}=={SDIST_VERSION}"
    return str(_package_files().distribution_archive(requirement, dest, sdist=True))


def patch_setup_py(path):
    """Empty the extension list and drop the black pin; fail loudly if the file changed."""
    with open(path) as f:
        src = f.read()
    new, n_ext = re.subn(r"ext_modules=get_extensions\(\),", "ext_modules=[],", src)
    new, n_black = re.subn(r'^\s*"black==[^"]*",\s*\n', "", new, flags=re.M)
    if n_ext != 1 or n_black != 1:
        raise RuntimeError(
            f"{path}: unexpected content (ext_modules: {n_ext}, black pin: {n_black} matches); "
            "the sdist is not the detectron2 v0.6 this script knows"
        )
    with open(path, "w") as f:
        f.write(new)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--force", action="store_true", help="reinstall even if importable")
    args = parser.parse_args()

    if not args.force and importlib.util.find_spec("detectron2") is not None:
        import detectron2

        print(
            f"detectron2 {detectron2.__version__} already installed at "
            f"{os.path.dirname(detectron2.__file__)}; leaving it untouched"
        )
        return
    if importlib.util.find_spec("torch") is None:
        sys.exit("install torch first: detectron2's setup.py imports it")

    with tempfile.TemporaryDirectory() as tmp:
        sdist = download_sdist(tmp)
        with open(sdist, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        if digest != SDIST_SHA256:
            sys.exit(f"{sdist}: sha256 {digest} != expected {SDIST_SHA256}")
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        src = os.path.join(tmp, SDIST_FILE[: -len(".tar.gz")])
        patch_setup_py(os.path.join(src, "setup.py"))
        # The sdist keeps the model-zoo configs inside the package, where setup.py's
        # get_model_zoo_configs() does not look; move them to the top-level configs/ it expects
        # (as in a git checkout) so they are installed as package data.
        os.replace(
            os.path.join(src, "detectron2", "model_zoo", "configs"), os.path.join(src, "configs")
        )
        pip("install", "--no-build-isolation", "-q", src)


if __name__ == "__main__":
    main()
