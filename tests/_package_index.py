"""A PEP 503 package index on disk, as pip reads one from a ``file://`` URL: the tests of the
source-archive download (ainnoface_d2/builtin_faces/package_files.py,
tools/install_detectron2.py)."""

from pathlib import Path


def simple_index(root: Path, project: str, file_name: str, archive: bytes, sha256: str) -> str:
    """Write ``root/files/<file_name>`` and the simple page of ``project`` that links it with
    ``#sha256=<sha256>``; returns the index URL (``file://.../simple``)."""
    files = root / "files"
    files.mkdir(parents=True)
    (files / file_name).write_bytes(archive)
    page = root / "simple" / project
    page.mkdir(parents=True)
    link = f"../../files/{file_name}#sha256={sha256}"
    (page / "index.html").write_text(f'<a href="{link}">{file_name}</a>')
    return (root / "simple").as_uri()
