"""Mixed-precision training (``SOLVER.AMP.ENABLED``): Detectron2's ``AMPTrainer`` on a GPU, bf16
autocast (``ainnoface_d2.engine.CPUAutocastTrainer``) on a CPU.

Trains the small config on the built-in faces under AMP and checks what a user of
``SOLVER.AMP.ENABLED True`` relies on: every iteration runs (Detectron2 raises on the first
non-finite total loss), the loss goes down, the gradient scaler ends finite and positive, and the
trained model's fp16-autocast detections match its fp32 ones. Skipped without CUDA
(``tools/gpu_check.sh`` runs it on the GPU machine). The CPU test is short: the route is bf16,
the losses fp32, the weights fp32 and trained.
"""

import math
import os

import ainnoface_d2  # noqa: F401
from ainnoface_d2 import get_ainnoface_cfg
from ainnoface_d2.engine import (
    CPUAutocastTrainer,
    Trainer,
    cpu_bf16_native,
    size_protocol_mapper,
)

import pytest
import torch
from _builtin_fixture import SMALL_CONFIG, make_tiny_faces, register_tiny_faces, tiny_train_opts
from detectron2.data import build_detection_test_loader
from detectron2.structures import Boxes, pairwise_iou

ITERS = int(os.environ.get("AINNOFACE_AMP_TEST_ITERS", "200"))


def _matched(a, b, top=20, iou_thresh=0.9):
    """(matched, total): of the ``top`` best detections of ``a``, those that have a box of ``b``
    at IoU >= iou_thresh."""
    a_boxes = a.pred_boxes.tensor[torch.argsort(a.scores, descending=True)[:top]].float()
    if len(a_boxes) == 0 or len(b) == 0:
        return 0, len(a_boxes)
    iou = pairwise_iou(Boxes(a_boxes), Boxes(b.pred_boxes.tensor.float()))
    return int((iou.max(dim=1).values >= iou_thresh).sum()), len(a_boxes)


def train_and_compare(tmp_path, device, amp, low_dtype, iters):
    """Train under ``amp`` on ``device``; returns (losses, trainer state, detection counts of
    fp32 vs ``low_dtype`` autocast: fp32 matched, fp32 total, low matched, low total)."""
    prefix = "amp_test_faces"
    register_tiny_faces(prefix, make_tiny_faces(tmp_path / "faces", num_train=32, num_val=8))
    overrides = {
        # The small config's own widths (not the tiny test model): it learns faces in minutes.
        "MODEL.FPN.OUT_CHANNELS": 64,
        "MODEL.AINNOFACE.RFE_BRANCH_CHANNELS": 16,
        "MODEL.AINNOFACE.C6_CHANNELS": 128,
        "MODEL.AINNOFACE.C7_CHANNELS": 64,
        "MODEL.DEVICE": device,
        "SOLVER.AMP.ENABLED": amp,
        "SOLVER.MAX_ITER": iters,
        "SOLVER.STEPS": f"({max(1, int(iters * 0.8))},)",
        "SOLVER.WARMUP_ITERS": max(1, min(50, iters // 4)),
        "SOLVER.IMS_PER_BATCH": 8,
        "INPUT.FACE.TRAIN_SIZE": 256,
        "INPUT.MIN_SIZE_TEST": 0,
    }
    cfg = get_ainnoface_cfg(SMALL_CONFIG, tiny_train_opts(prefix, tmp_path / "out", **overrides))
    cfg.freeze()
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()  # raises FloatingPointError on a non-finite loss
    losses = [v for v, _ in trainer.storage.history("total_loss").values()]

    model = trainer.model.eval()
    mapper = size_protocol_mapper(cfg, "original")
    counts = torch.zeros(4, dtype=torch.long)
    for inputs in build_detection_test_loader(cfg, f"{prefix}_val", mapper=mapper):
        with torch.no_grad():
            ref = model(inputs)[0]["instances"].to("cpu")
            with torch.autocast(torch.device(device).type, dtype=low_dtype):
                low = model(inputs)[0]["instances"].to("cpu")
        counts += torch.tensor([*_matched(ref, low), *_matched(low, ref)])
    return losses, trainer.state_dict(), counts.tolist()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="AMP training needs CUDA")
def test_amp_training_is_stable_and_fp16_inference_agrees(tmp_path):
    losses, state, counts = train_and_compare(tmp_path, "cuda", True, torch.float16, ITERS)
    assert len(losses) == ITERS and all(math.isfinite(v) for v in losses)
    tenth = max(1, ITERS // 10)
    assert sum(losses[-tenth:]) < sum(losses[:tenth]), (losses[:tenth], losses[-tenth:])
    scale = float(state["_trainer"]["grad_scaler"]["scale"])
    assert math.isfinite(scale) and scale > 0
    assert counts[1] > 0 and counts[3] > 0, counts
    assert counts[0] >= 0.95 * counts[1] and counts[2] >= 0.95 * counts[3], counts


@pytest.mark.skipif(not cpu_bf16_native(), reason="this CPU has no native bf16")
def test_cpu_amp_trains_in_bf16_with_fp32_losses_and_weights(tmp_path):
    prefix = "cpu_amp_faces"
    register_tiny_faces(prefix, make_tiny_faces(tmp_path / "faces", num_train=4, num_val=2))
    opts = tiny_train_opts(prefix, tmp_path / "out", **{"SOLVER.AMP.ENABLED": True})
    cfg = get_ainnoface_cfg(SMALL_CONFIG, opts + ["MODEL.DEVICE", "cpu"])
    trainer = Trainer(cfg)
    assert isinstance(trainer._trainer, CPUAutocastTrainer)
    trainer.resume_or_load(resume=False)
    model = trainer.model
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    conv_dtypes, loss_dtypes = set(), set()
    hook = model.backbone.bottom_up.stem.conv1.register_forward_hook(
        lambda mod, inp, out: conv_dtypes.add(out.dtype) if mod.training else None
    )
    real_forward = model.forward

    def recording_forward(batched_inputs):
        out = real_forward(batched_inputs)
        if model.training:
            loss_dtypes.update(v.dtype for v in out.values())
        return out

    model.forward = recording_forward
    trainer.train()
    hook.remove()
    assert conv_dtypes == {torch.bfloat16}
    assert loss_dtypes == {torch.float32}
    losses = [v for v, _ in trainer.storage.history("total_loss").values()]
    assert len(losses) == cfg.SOLVER.MAX_ITER and all(math.isfinite(v) for v in losses)
    after = model.state_dict()
    assert all(after[k].dtype == v.dtype for k, v in before.items())
    changed = [
        k for k, v in before.items() if v.is_floating_point() and not torch.equal(v, after[k])
    ]
    assert any("stem.conv1.weight" in k for k in changed)
    assert "grad_scaler" not in trainer.state_dict()["_trainer"]


def test_cpu_amp_without_native_bf16_trains_in_fp32(tmp_path, monkeypatch, caplog):
    from ainnoface_d2 import engine

    monkeypatch.setattr(engine, "cpu_bf16_native", lambda: False)
    prefix = "cpu_fp32_faces"
    register_tiny_faces(prefix, make_tiny_faces(tmp_path / "faces", num_train=2, num_val=1))
    opts = tiny_train_opts(prefix, tmp_path / "out", **{"SOLVER.AMP.ENABLED": True})
    cfg = get_ainnoface_cfg(SMALL_CONFIG, opts + ["MODEL.DEVICE", "cpu"])
    trainer = Trainer(cfg)
    assert type(trainer._trainer).__name__ == "SimpleTrainer"
    assert "without native bf16" in caplog.text
