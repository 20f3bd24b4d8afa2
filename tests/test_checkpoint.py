"""ainnoface_d2.checkpoint: weights are compared with the model they are loaded into (training,
evaluation, FaceDetector; the demo and export go through FaceDetector and are run as commands in
tests/test_tools_errors.py), unreadable files are named, checkpoints are written atomically."""

import errno
import logging

import ainnoface_d2  # noqa: F401
from ainnoface_d2 import get_ainnoface_cfg
from ainnoface_d2.checkpoint import (
    MIN_MATCHED,
    AInnoFaceCheckpointer,
    CheckpointError,
    build_checkpointer,
)
from ainnoface_d2.engine import Trainer, load_for_eval
from ainnoface_d2.predictor import FaceDetector

import pytest
import torch
import torchvision
from _builtin_fixture import SMALL_CONFIG, make_tiny_faces, register_tiny_faces, tiny_train_opts
from _scripts import load_script
from detectron2.modeling import build_model


def _model(*opts):
    cfg = get_ainnoface_cfg(SMALL_CONFIG, ["MODEL.WEIGHTS", "", *opts])
    return cfg, build_model(cfg)


@pytest.fixture(scope="module")
def resnet18_pth(tmp_path_factory):
    """Another network's weights: a torchvision ResNet-18 state_dict saved with torch.save."""
    path = tmp_path_factory.mktemp("other") / "resnet18.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return str(path)


def _one_line_naming(err, path):
    message = str(err.value)
    assert message.startswith(path + ":"), message
    assert "\n" not in message
    return message


def test_weights_of_another_network_are_refused_by_every_loader(resnet18_pth, tmp_path):
    cfg, model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        build_checkpointer(cfg, model).load(resnet18_pth)
    message = _one_line_naming(err, resnet18_pth)
    total = len([k for k in before if k not in ("pixel_mean", "pixel_std")])
    assert f"0 of the model's {total} tensors" in message
    # The first differing layers of both sides are named.
    assert "missing from it" in message and "backbone.bottom_up." in message
    assert "not in the model" in message and "bn1.bias" in message
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())

    with pytest.raises(CheckpointError) as err:  # FaceDetector: the demo and export
        FaceDetector(SMALL_CONFIG, weights=resnet18_pth, device="cpu")
    _one_line_naming(err, resnet18_pth)

    eval_cfg = cfg.clone()
    eval_cfg.MODEL.WEIGHTS = resnet18_pth
    eval_cfg.OUTPUT_DIR = str(tmp_path / "eval")
    with pytest.raises(CheckpointError) as err:  # train_net.py --eval-only
        load_for_eval(eval_cfg)
    _one_line_naming(err, resnet18_pth)

    register_tiny_faces("ckpt_faces", make_tiny_faces(tmp_path / "faces", 2, 1))
    opts = tiny_train_opts("ckpt_faces", tmp_path / "train", **{"MODEL.WEIGHTS": resnet18_pth})
    train_cfg = get_ainnoface_cfg(SMALL_CONFIG, opts)
    train_cfg.freeze()
    trainer = Trainer(train_cfg)
    assert isinstance(trainer.checkpointer, AInnoFaceCheckpointer)
    periodic = [h for h in trainer._hooks if hasattr(h, "checkpointer")]
    assert periodic and all(h.checkpointer is trainer.checkpointer for h in periodic)
    with pytest.raises(CheckpointError) as err:  # train_net.py: no training from scratch
        trainer.resume_or_load(resume=False)
    _one_line_naming(err, resnet18_pth)


def test_partial_weights_load_when_allowed(resnet18_pth, caplog):
    cfg, model = _model("MODEL.AINNOFACE.ALLOW_PARTIAL_WEIGHTS", "True")
    with caplog.at_level(logging.WARNING, logger="ainnoface_d2.checkpoint"):
        build_checkpointer(cfg, model).load(resnet18_pth)
    assert any(resnet18_pth in r.getMessage() for r in caplog.records)


def test_the_rule_is_half_of_the_tensors_by_name_and_shape(tmp_path):
    cfg, model = _model()
    state = model.state_dict()
    names = [k for k in state if k not in ("pixel_mean", "pixel_std")]
    need = -(-len(names) * MIN_MATCHED // 1)  # ceil: at least half
    for kept, loads in ((int(need), True), (int(need) - 1, False)):
        part = {k: state[k] + 1 for k in names[:kept]}
        # A name with the wrong shape does not count as matched.
        part[names[-1]] = torch.zeros(3)
        path = str(tmp_path / f"part{kept}.pth")
        torch.save({"model": part}, path)
        _, fresh = _model()
        checkpointer = build_checkpointer(cfg, fresh)
        if loads:
            checkpointer.load(path)
            assert torch.equal(fresh.state_dict()[names[0]], state[names[0]] + 1)
        else:
            with pytest.raises(CheckpointError, match=f"{kept} of the model's {len(names)}"):
                checkpointer.load(path)


def test_imagenet_backbone_initialisation_still_loads(tmp_path):
    """MODEL.WEIGHTS = the converter's .pkl (the ImageNet backbone only) loads; one that covers
    less than half of the backbone (here its stem and first stage) is refused."""
    convert = load_script("tools/convert_torchvision_to_d2.py", "convert_tv_ckpt_test")
    cfg, model = _model()
    torch.manual_seed(0)
    tv = torchvision.models.resnet18().state_dict()
    converted = convert.convert_state_dict(tv)
    path = str(tmp_path / "R-18-torchvision.pkl")
    convert.save_d2_checkpoint(converted, path)
    build_checkpointer(cfg, model).load(path)
    loaded = model.state_dict()
    assert torch.equal(loaded["backbone.bottom_up.stem.conv1.weight"], tv["conv1.weight"])
    assert torch.equal(
        loaded["backbone.bottom_up.res5.1.conv2.weight"], tv["layer4.1.conv2.weight"]
    )

    few = {k: v for k, v in converted.items() if k.startswith(("stem.", "res2."))}
    path = str(tmp_path / "R-18-stem.pkl")
    convert.save_d2_checkpoint(few, path)
    backbone = [k for k in loaded if k.startswith("backbone.bottom_up.")]
    with pytest.raises(CheckpointError) as err:
        build_checkpointer(cfg, model).load(path)
    assert f"{len(few)} of the model's {len(backbone)} backbone" in _one_line_naming(err, path)


@pytest.mark.parametrize("kind", ["truncated", "text", "missing"])
def test_unreadable_checkpoint_is_named(kind, tmp_path):
    cfg, model = _model()
    path = tmp_path / "model_final.pth"
    if kind == "truncated":
        torch.save({"model": model.state_dict()}, path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif kind == "text":
        path.write_text("not a checkpoint\n")
    error = FileNotFoundError if kind == "missing" else CheckpointError
    with pytest.raises(error) as err:
        build_checkpointer(cfg, model).load(str(path))
    _one_line_naming(err, str(path))


def test_resume_from_a_truncated_last_checkpoint_names_it(tmp_path):
    cfg, model = _model()
    checkpointer = build_checkpointer(cfg, model, save_dir=str(tmp_path))
    checkpointer.save("model_0000009")
    path = tmp_path / "model_0000009.pth"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError) as err:
        checkpointer.resume_or_load("", resume=True)
    _one_line_naming(err, str(path))


def test_disk_full_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    cfg, model = _model()
    checkpointer = build_checkpointer(cfg, model, save_dir=str(tmp_path))
    checkpointer.save("model_final")
    previous = (tmp_path / "model_final.pth").read_bytes()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1)

    real_save = torch.save

    def save_then_fail(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.truncate(f.tell() // 2)  # half of it reached the disk ...
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", save_then_fail)
    with pytest.raises(OSError):
        checkpointer.save("model_final")
    monkeypatch.undo()
    assert (tmp_path / "model_final.pth").read_bytes() == previous
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_final.pth"]

    checkpointer.save("model_0000001")  # a good save moves the tag, atomically too
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    _, fresh = _model()
    build_checkpointer(cfg, fresh).load(str(tmp_path / "model_0000001.pth"))
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in model.state_dict().items())
