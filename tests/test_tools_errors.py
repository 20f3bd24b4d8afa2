"""The tools stop on bad input with one line, ``<tool>: error: <file>: <what was expected>``, and
exit status 2; ``--debug`` or ``AINNOFACE_DEBUG=1`` shows the traceback (ainnoface_d2/cli.py).

The commands run as a user runs them, in a subprocess, so that the entry point is what is tested.
"""

import os
import re
import subprocess
import sys

import ainnoface_d2  # noqa: F401
from ainnoface_d2 import cli
from ainnoface_d2.checkpoint import CheckpointError

import numpy as np
import pytest
import torch
import torchvision
from _builtin_fixture import REPO, SMALL_CONFIG
from _scripts import load_script


def _run(tool, *args, debug=False, env=None):
    """``(exit status, stderr)`` of ``python tools/<tool> args``."""
    environ = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, environ.get("PYTHONPATH")]))
    if not (env and cli.DEBUG_ENV in env):
        environ.pop(cli.DEBUG_ENV, None)
    cmd = [sys.executable, os.path.join(REPO, tool), *map(str, args)] + (["--debug"] * debug)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=environ, cwd=REPO, timeout=600)
    return proc.returncode, proc.stderr


def _one_line(tool, *args, **kwargs):
    """The error line of a tool run that must fail with exit status 2 and no traceback."""
    code, err = _run(tool, *args, **kwargs)
    assert code == 2, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    prog = os.path.basename(tool)
    errors = [line for line in err.splitlines() if line.startswith(f"{prog}: error: ")]
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]), err[-3000:]
    return errors[0][len(f"{prog}: error: ") :]


_ENTRY = {"tools/train_net.py": "invoke_main"}


def _one_line_in_process(capsys, tool, *args):
    """:func:`_one_line` with the tool's entry function called here (faster than a process)."""
    module = load_script(tool, "errors_" + os.path.basename(tool)[:-3])
    main = getattr(module, _ENTRY.get(tool, "main"))
    prog = os.path.basename(tool)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        cli.run_cli(main, list(map(str, args)), prog=prog)
    assert e.value.code == 2
    # Handlers that an earlier in-process run attached to a stream pytest has closed since
    # report that on their own ("--- Logging error ---"); a process of its own has none.
    err = re.sub(
        r"--- Logging error ---.*?\nArguments: [^\n]*\n", "", capsys.readouterr().err, flags=re.S
    )
    errors = [line for line in err.splitlines() if line.startswith(f"{prog}: error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err[-3000:]
    return errors[0][len(f"{prog}: error: ") :]


DEMO = ("tools/demo.py", "--config-file", SMALL_CONFIG)
EXPORT = ("tools/export_model.py", "--config-file", SMALL_CONFIG)
EVAL = ("tools/train_net.py", "--config-file", SMALL_CONFIG, "--eval-only")


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    import cv2

    path = tmp_path_factory.mktemp("img") / "a.jpg"
    cv2.imwrite(str(path), np.full((64, 64, 3), 128, np.uint8))
    return path


@pytest.fixture(scope="module")
def resnet18_pth(tmp_path_factory):
    path = tmp_path_factory.mktemp("other") / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


def test_weights_of_another_network_stop_every_tool(resnet18_pth, image, tmp_path, capsys):
    """A torchvision ResNet-18 state_dict: the demo, export and evaluation refuse it in one line
    (training too: tests/test_checkpoint.py, with the Trainer that tools/train_net.py runs)."""
    weights = ("MODEL.WEIGHTS", resnet18_pth)
    runs = [
        (*DEMO, "--input", image, "--output", tmp_path / "drawn", "--opts", *weights),
        (*EXPORT, "--output", tmp_path / "exported", *weights),
    ]
    lines = [_one_line_in_process(capsys, *run) for run in runs]
    lines.append(_one_line(*EVAL, "OUTPUT_DIR", tmp_path / "eval", *weights))  # as a command
    for line in lines:
        assert line.startswith(f"{resnet18_pth}: holds the weights of another network: 0 of"), line
        assert "ALLOW_PARTIAL_WEIGHTS" in line
    assert not (tmp_path / "exported" / "model.onnx").exists()
    assert not (tmp_path / "drawn").exists()


def test_demo_missing_checkpoint_and_bad_config_options(image, tmp_path, capsys):
    missing = tmp_path / "nowhere" / "model_final.pth"
    line = _one_line(*DEMO, "--input", image, "--opts", "MODEL.WEIGHTS", missing)  # as a command
    assert line.startswith(f"{missing}: checkpoint not found")
    demo = (capsys, *DEMO, "--input", image, "--opts")
    line = _one_line_in_process(*demo, "MODEL.NO_SUCH_KEY", "1")
    assert "MODEL.NO_SUCH_KEY" in line and line.startswith("command-line config options")
    line = _one_line_in_process(*demo, "SOLVER.MAX_ITER", "many")
    assert "SOLVER.MAX_ITER" in line and "Type mismatch" in line
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text(f'_BASE_: "{SMALL_CONFIG}"\nMODEL:\n  NO_SUCH_KEY: 1\n')
    line = _one_line_in_process(
        capsys, "tools/demo.py", "--config-file", bad_yaml, "--input", image
    )
    assert line.startswith(f"{bad_yaml}:") and "NO_SUCH_KEY" in line


def test_debug_shows_the_traceback(image, tmp_path):
    missing = tmp_path / "model_final.pth"
    code, err = _run(*DEMO, "--input", image, "--opts", "MODEL.WEIGHTS", missing, debug=True)
    assert code != 0 and "Traceback" in err and f"FileNotFoundError: {missing}" in err
    code, err = _run(
        "tools/evaluate_wider_face.py",
        "--pred",
        tmp_path,
        "--gt",
        tmp_path,
        env={cli.DEBUG_ENV: "1"},
    )
    assert code != 0 and "Traceback" in err and "FileNotFoundError" in err


def test_export_and_resume_name_a_truncated_or_text_checkpoint(tmp_path, capsys):
    from ainnoface_d2 import get_ainnoface_cfg

    from detectron2.modeling import build_model

    model = build_model(get_ainnoface_cfg(SMALL_CONFIG, ["MODEL.WEIGHTS", ""]))
    out = tmp_path / "run"
    out.mkdir()
    truncated = out / "model_0000009.pth"
    torch.save({"model": model.state_dict(), "iteration": 9}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:5000])
    (out / "last_checkpoint").write_text(truncated.name)
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights\n")

    line = _one_line(*EXPORT, "--output", tmp_path / "exported", "MODEL.WEIGHTS", text)
    assert line.startswith(f"{text}: not a readable checkpoint"), line
    export = (capsys, *EXPORT, "--output", tmp_path / "exported", "MODEL.WEIGHTS")
    line = _one_line_in_process(*export, truncated)
    assert line.startswith(f"{truncated}: not a readable checkpoint"), line
    # --resume reads last_checkpoint
    line = _one_line_in_process(capsys, *EVAL, "--resume", "OUTPUT_DIR", out)
    assert line.startswith(f"{truncated}: not a readable checkpoint"), line


def test_an_output_folder_that_cannot_be_created(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    target = blocker / "exported"
    line = _one_line_in_process(capsys, *EXPORT, "--output", target, "MODEL.WEIGHTS", "")
    assert line.startswith(f"{target}: ") or line.startswith(f"{blocker}: "), line


def test_prediction_and_ground_truth_files_are_named(tmp_path, capsys):
    """A Latin-1 byte in a prediction file and a truncated .mat: file (and line) named."""
    from ainnoface_d2.evaluation import write_submission_dir

    from test_wider_face_evaluation import _hand_case, _write_mat_gt

    gt, preds = _hand_case()
    _write_mat_gt(tmp_path / "gt", gt)
    write_submission_dir(tmp_path / "pred", preds)
    bad = tmp_path / "pred" / "ev" / "A.txt"
    lines = bad.read_bytes().split(b"\n")
    lines[3] = lines[3] + b" caf\xe9"
    bad.write_bytes(b"\n".join(lines))
    tool = load_script("tools/evaluate_wider_face.py", "evaluate_wider_face_errors")
    argv = ["--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")]

    def error():
        with pytest.raises(SystemExit) as e:
            cli.run_cli(tool.main, argv, prog="evaluate_wider_face.py")
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        return err[0]

    assert f"{bad}:4: byte 0xe9 is not UTF-8 text" in error()
    write_submission_dir(tmp_path / "pred", preds)
    mat = tmp_path / "gt" / "wider_face_val.mat"
    mat.write_bytes(mat.read_bytes()[:300])
    assert f"{mat}: not a readable MATLAB file" in error()


def test_face_detector_without_a_config_file():
    from ainnoface_d2.predictor import FaceDetector

    with pytest.raises(TypeError, match="config_file must be the path of a config file.*None"):
        FaceDetector(None)


def _fails_in_a_child(rank):
    raise CheckpointError(f"/data/model_{rank}.pth: holds the weights of another network")


def _bug_in_a_child(rank):
    raise ZeroDivisionError("a bug")


def test_errors_of_launched_processes_are_one_line_too(capsys):
    """What ``detectron2.engine.launch`` (``--num-gpus`` > 1) hands back: the child's exception
    as text in a ``ProcessRaisedException``."""
    import torch.multiprocessing as mp

    def spawn(fn):
        return lambda argv: mp.spawn(fn, nprocs=1, join=True)

    with pytest.raises(SystemExit) as e:
        cli.run_cli(spawn(_fails_in_a_child), [], prog="train_net.py")
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "train_net.py: error: /data/model_0.pth: holds the weights of another network "
        "(in a training process)"
    ]
    with pytest.raises(Exception, match="ZeroDivisionError"):  # a bug keeps its traceback
        cli.run_cli(spawn(_bug_in_a_child), [], prog="train_net.py")


def test_run_cli_passes_bugs_and_exit_codes_through(monkeypatch, capsys):
    # setenv, not delenv: monkeypatch restores the variable's absence only where it recorded it,
    # and run_cli sets it for the rest of the process.
    monkeypatch.setenv(cli.DEBUG_ENV, "0")
    assert cli.run_cli(lambda argv: argv, ["a", "--debug", "b"]) == ["a", "b"]
    assert os.environ[cli.DEBUG_ENV] == "1"  # inherited by the processes a tool starts
    monkeypatch.setenv(cli.DEBUG_ENV, "0")
    with pytest.raises(KeyError):
        cli.run_cli(lambda argv: {}["bug"], [])

    def permission(argv):
        raise PermissionError(13, "Permission denied", "/root/out")

    with pytest.raises(SystemExit):
        cli.run_cli(permission, [], prog="demo.py")
    assert capsys.readouterr().err == "demo.py: error: /root/out: Permission denied\n"
    failed = subprocess.CalledProcessError(2, ["python", "tools/train_net.py"])
    with pytest.raises(SystemExit):
        cli.run_cli(lambda argv: (_ for _ in ()).throw(failed), [], prog="quickstart.py")
    assert "`python tools/train_net.py` exited with status 2" in capsys.readouterr().err


def test_prediction_files_of_another_image_or_with_empty_boxes_are_refused(tmp_path):
    """tools/evaluate_wider_face.py reads the folder with read_submission_dir: a file whose line
    1 names another image, or a box with w or h <= 0 (x2 y2 written for w h), stops it."""
    from ainnoface_d2.evaluation import read_submission_dir, write_submission_dir

    from test_wider_face_evaluation import _hand_case

    gt, preds = _hand_case()
    pred = tmp_path / "pred"
    write_submission_dir(pred, preds)
    path = pred / "ev" / "A.txt"
    lines = path.read_text().splitlines()
    # The image name with a folder, an extension or a BOM is the same image.
    for first in ("A", "A.jpg", "ev/A.jpg", "\ufeffA"):
        path.write_text("\n".join([first, *lines[1:]]) + "\n", encoding="utf-8")
        assert read_submission_dir(pred, gt)[("ev", "A")].shape == (5, 5)
    path.write_text("\n".join(["B", *lines[1:]]) + "\n")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}:1: names image 'B'"):
        read_submission_dir(pred, gt)
    for w, h in (("-10", "10"), ("10", "0")):
        boxes = [line.split() for line in lines[2:]]
        boxes[3][2:4] = [w, h]
        path.write_text("\n".join(lines[:2] + [" ".join(b) for b in boxes]) + "\n")
        with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}:6: box with width"):
            read_submission_dir(pred, gt)


def test_json_records_the_events_without_prediction_files(tmp_path, caplog):
    import json
    import logging

    from ainnoface_d2.evaluation import evaluate, write_submission_dir

    from test_wider_face_evaluation import _gt, _hand_case, _write_mat_gt

    gt, preds = _hand_case()
    gt[("zz", "E")] = _gt([[0, 0, 10, 10]], [1])  # a second event, with one kept face
    gt[("zz", "F")] = _gt([[0, 0, 20, 20]], [1])
    _write_mat_gt(tmp_path / "gt", gt)
    write_submission_dir(tmp_path / "pred", preds)  # nothing for event zz, nor for ev/C
    tool = load_script("tools/evaluate_wider_face.py", "evaluate_wider_face_json")
    out = tmp_path / "aps.json"
    with caplog.at_level(logging.WARNING):
        tool.main(
            ["--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")] + ["--json", str(out)]
        )
    assert "3 of 6 prediction files are missing" in caplog.text
    assert "1 event(s) have no file at all: zz" in caplog.text
    record = json.loads(out.read_text())
    assert record["images"] == 6 and record["missing_prediction_files"] == 3
    assert record["events_without_predictions"] == ["zz"]
    # The APs count the missing images as images without detections, as the official tool does.
    assert record["hard"] == pytest.approx(evaluate(preds, gt)["hard"])
