"""tools/install_detectron2.py: which package index it reads, without pip's private modules."""

import subprocess
import sys

from _scripts import load_script


def _load():
    return load_script("tools/install_detectron2.py")


def test_index_url_from_env_then_pip_config_then_pypi(monkeypatch):
    tool = _load()
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.example/simple/")
    assert tool.index_url() == "https://mirror.example/simple"

    monkeypatch.delenv("PIP_INDEX_URL")
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        out = "https://corp.example/pypi/simple\n" if len(calls) == 1 else ""
        return subprocess.CompletedProcess(cmd, 0 if out else 1, stdout=out, stderr="")

    monkeypatch.setattr(tool.subprocess, "run", fake_run)
    assert tool.index_url() == "https://corp.example/pypi/simple"
    assert calls[0][1:] == ["-m", "pip", "config", "get", "global.index-url"]
    assert tool.index_url() == "https://pypi.org/simple"  # pip's default when nothing is set
    assert calls[0][0] == sys.executable
