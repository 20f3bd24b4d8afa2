"""tools/install_detectron2.py: which package index it reads (the one pip uses, through
ainnoface_d2/builtin_faces/package_files.py, loaded from its file before anything is installed),
and what it fetches from there, without pip's private modules."""

import hashlib
import subprocess
import sys

from ainnoface_d2.builtin_faces import package_files

from _package_index import simple_index
from _scripts import load_script


def _load():
    return load_script("tools/install_detectron2.py")


def test_index_url_from_env_then_pip_config_then_pypi(monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.example/simple/")
    assert package_files.index_url() == "https://mirror.example/simple"

    monkeypatch.delenv("PIP_INDEX_URL")
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        out = "https://corp.example/pypi/simple\n" if len(calls) == 1 else ""
        return subprocess.CompletedProcess(cmd, 0 if out else 1, stdout=out, stderr="")

    monkeypatch.setattr(package_files.subprocess, "run", fake_run)
    assert package_files.index_url() == "https://corp.example/pypi/simple"
    assert calls[0][1:] == ["-m", "pip", "config", "get", "global.index-url"]
    assert package_files.index_url() == "https://pypi.org/simple"  # pip's default
    assert calls[0][0] == sys.executable


def test_sdist_comes_from_the_index_pip_uses(tmp_path, monkeypatch):
    tool = _load()
    archive = b"stand-in for the detectron2 sdist"
    sha = hashlib.sha256(archive).hexdigest()
    index = simple_index(tmp_path / "index", tool.SDIST_NAME, tool.SDIST_FILE, archive, sha)
    monkeypatch.setenv("PIP_INDEX_URL", index)
    path = tool.download_sdist(str(tmp_path / "dest"))
    assert path == str(tmp_path / "dest" / tool.SDIST_FILE)
    assert open(path, "rb").read() == archive
