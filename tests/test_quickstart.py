"""tools/quickstart.py: a run of an earlier version of the CPU config (or of other overrides) is
not resumed as the run the config asks for now."""

import os

import ainnoface_d2  # noqa: F401
from ainnoface_d2 import get_ainnoface_cfg

import pytest
import torch
from _builtin_fixture import SMALL_CONFIG
from _scripts import load_script
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model


def _finished_run(output, *opts):
    """``output`` as Detectron2 leaves it after training the CPU config with ``opts``: the last
    checkpoint, and the config that ``default_setup`` wrote."""
    cfg = get_ainnoface_cfg(SMALL_CONFIG, ["MODEL.DEVICE", "cpu", "OUTPUT_DIR", str(output), *opts])
    output.mkdir()
    DetectionCheckpointer(build_model(cfg), save_dir=str(output)).save("model_final")
    assert (output / "last_checkpoint").read_text().strip() == "model_final.pth"
    (output / "config.yaml").write_text(cfg.dump())


def test_a_run_of_another_model_is_moved_aside_and_not_resumed(tmp_path, capsys):
    quickstart = load_script("tools/quickstart.py")
    output = tmp_path / "quickstart"
    assert quickstart.set_aside_other_run(str(output), []) is None  # no run yet

    _finished_run(output)  # the config as it is: resumed (left where it is)
    assert quickstart.set_aside_other_run(str(output), []) is None
    assert (output / "model_final.pth").is_file()

    # The same run with an override that changes the layers: another model now.
    assert quickstart.set_aside_other_run(str(output), ["MODEL.AINNOFACE.USE_RFE", "True"]) == (
        f"{output}.earlier-1"
    )
    assert not output.exists()
    assert (tmp_path / "quickstart.earlier-1" / "model_final.pth").is_file()
    assert "holds another model" in capsys.readouterr().out

    # An earlier version of the config with the RFE block; a second earlier run is kept too.
    _finished_run(output, "MODEL.AINNOFACE.USE_RFE", "True")
    saved = torch.load(output / "model_final.pth", weights_only=False)["model"]
    assert any(".rfe." in k or "branches" in k for k in saved)
    assert quickstart.set_aside_other_run(str(output), []) == f"{output}.earlier-2"
    assert sorted(os.listdir(tmp_path)) == ["quickstart.earlier-1", "quickstart.earlier-2"]


def test_a_run_of_other_training_settings_is_moved_aside(tmp_path, capsys):
    quickstart = load_script("tools/quickstart.py")
    output = tmp_path / "quickstart"
    # The same model trained with another schedule (an earlier version of the config).
    _finished_run(output, "SOLVER.LR_SCHEDULER_NAME", "WarmupMultiStepLR", "SOLVER.STEPS", "(9,)")
    assert quickstart.set_aside_other_run(str(output), []) == f"{output}.earlier-1"
    message = capsys.readouterr().out
    assert "other training settings" in message and "SOLVER.LR_SCHEDULER_NAME" in message
    assert "SOLVER.STEPS [9] -> []" in message

    # Settings that do not change what is trained (evaluation, output folder): resumed.
    _finished_run(output, "TEST.DETECTIONS_PER_IMAGE", "7")
    assert quickstart.set_aside_other_run(str(output), ["OUTPUT_DIR", "elsewhere"]) is None
    # An override given now and not then (or the other way round): another run.
    assert quickstart.set_aside_other_run(str(output), ["SOLVER.MAX_ITER", "100"]) == (
        f"{output}.earlier-2"
    )
    max_iter = get_ainnoface_cfg(SMALL_CONFIG).SOLVER.MAX_ITER
    assert f"SOLVER.MAX_ITER {max_iter} -> 100" in capsys.readouterr().out


def test_help_and_bad_overrides_end_before_any_work(tmp_path, monkeypatch, capsys):
    quickstart = load_script("tools/quickstart.py")
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    monkeypatch.setattr(quickstart, "prepare_data", lambda root: pytest.fail("built the data"))
    with pytest.raises(SystemExit) as exit_:
        quickstart.main(["--help"])
    assert (
        exit_.value.code == 0 and "The main job on the built-in dataset" in capsys.readouterr().out
    )
    with pytest.raises(SystemExit) as exit_:
        quickstart.main(["SOLVER.MAX_ITER"])
    assert exit_.value.code == 2 and "KEY VALUE pairs" in capsys.readouterr().err
    with pytest.raises(ValueError, match="SOLVER.NO_SUCH_KEY"):  # run_cli: one line, exit 2
        quickstart.main(["SOLVER.NO_SUCH_KEY", "3"])
    assert quickstart.parse_args(["SOLVER.MAX_ITER", "100"]) == ["SOLVER.MAX_ITER", "100"]
    assert os.listdir(tmp_path) == []
