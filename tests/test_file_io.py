"""ainnoface_d2.file_io: a full disk during a write leaves the previous file as it was, no half
file and no temporary file; the writers of checkpoints, exported graphs, evaluation results and
drawings go through it."""

import errno
import json
import os
import stat

import ainnoface_d2  # noqa: F401
from ainnoface_d2 import file_io
from ainnoface_d2.file_io import (
    atomic_save_torch,
    atomic_write,
    atomic_write_json,
    write_image,
)

import numpy as np
import pytest
import torch


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_atomic_write_replaces_only_a_complete_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("previous\n")
    os.chmod(path, 0o640)
    with pytest.raises(OSError) as err:
        with atomic_write(path) as f:
            f.write("half of the new")
            _disk_full()
    assert err.value.errno == errno.ENOSPC
    assert path.read_text() == "previous\n"
    assert _listing(tmp_path) == ["out.txt"]

    with atomic_write(path) as f:
        f.write("new\n")
    assert path.read_text() == "new\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640  # the previous file's mode is kept
    assert _listing(tmp_path) == ["out.txt"]

    fresh = tmp_path / "fresh.bin"
    umask = os.umask(0o022)
    try:
        with atomic_write(fresh, "wb") as f:
            f.write(b"\x00")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o644  # as open() would make it
    with pytest.raises(ValueError):
        with atomic_write(path, "a"):
            pass


def _save_json(path):
    atomic_write_json(path, {"ap": 0.5})


def _save_torch(path):
    atomic_save_torch({"w": torch.ones(1000)}, path)


def _save_image(path):
    write_image(path, np.full((8, 8, 3), 200, np.uint8))


def _save_pr_curves(path):
    from ainnoface_d2.evaluation import plot_pr_curves

    curve = {"recall": np.linspace(0, 1, 5), "precision": np.linspace(1, 0.5, 5)}
    plot_pr_curves({"easy": 0.7, "pr_curves": {"easy": curve}}, str(path))


def _save_submission(path):
    from ainnoface_d2.evaluation import write_submission_dir

    write_submission_dir(str(path.parent.parent), {("0--Event", "img"): [[1, 2, 3, 4, 0.9]]})


@pytest.mark.parametrize(
    "name, writer",
    [
        ("metrics.json", _save_json),
        ("model_final.pth", _save_torch),
        ("drawing.jpg", _save_image),
        ("pr.png", _save_pr_curves),
        ("0--Event/img.txt", _save_submission),
    ],
)
def test_disk_full_at_the_flush_keeps_the_previous_file(name, writer, tmp_path, monkeypatch):
    """A full disk reported when the data is flushed (``fsync``: delayed allocation, network
    file systems) is the latest point a write can fail; the target is untouched."""
    path = tmp_path / "out" / name
    path.parent.mkdir(parents=True)
    path.write_bytes(b"previous")
    monkeypatch.setattr(file_io.os, "fsync", _disk_full)
    with pytest.raises(OSError):
        writer(path)
    monkeypatch.undo()
    assert path.read_bytes() == b"previous"
    assert _listing(path.parent) == [path.name]
    writer(path)
    assert path.read_bytes() != b"previous" and path.stat().st_size > 0
    assert _listing(path.parent) == [path.name]


def test_opencv_writing_nothing_is_an_error_naming_the_file(tmp_path, monkeypatch):
    import cv2

    path = tmp_path / "drawing.jpg"
    path.write_bytes(b"previous")

    def half_then_false(name, image):
        with open(name, "wb") as f:
            f.write(b"\xff\xd8half")
        return False

    monkeypatch.setattr(cv2, "imwrite", half_then_false)
    with pytest.raises(OSError, match="drawing.jpg"):
        _save_image(path)
    assert path.read_bytes() == b"previous"
    assert _listing(tmp_path) == ["drawing.jpg"]


def test_export_interrupted_by_a_full_disk_keeps_the_previous_graph_and_metadata(
    tmp_path, monkeypatch
):
    """tools/export_model.py: the graph and its metadata are replaced together or not at all."""
    from ainnoface_d2 import get_ainnoface_cfg
    from ainnoface_d2.export.graph import export_model

    from _builtin_fixture import SMALL_CONFIG
    from detectron2.modeling import build_model

    cfg = get_ainnoface_cfg(SMALL_CONFIG, ["MODEL.WEIGHTS", ""])
    model = build_model(cfg).eval()
    (tmp_path / "model.onnx").write_bytes(b"previous graph")
    (tmp_path / "model.onnx.json").write_text('{"previous": true}')

    def half_a_graph(graph, args, f, **kwargs):
        with open(f, "wb") as out:
            out.write(b"\x08\x07" * 1000)
        _disk_full()

    monkeypatch.setattr(torch.onnx, "export", half_a_graph)
    with pytest.raises(OSError):
        export_model(cfg, model, str(tmp_path), "onnx")
    assert (tmp_path / "model.onnx").read_bytes() == b"previous graph"
    assert json.loads((tmp_path / "model.onnx.json").read_text()) == {"previous": True}
    assert _listing(tmp_path) == ["model.onnx", "model.onnx.json"]
