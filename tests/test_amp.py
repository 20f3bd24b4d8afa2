"""Mixed-precision training (``SOLVER.AMP.ENABLED``, Detectron2's ``AMPTrainer``) on a GPU.

Trains the small config on the built-in faces under AMP and checks what a user of
``SOLVER.AMP.ENABLED True`` relies on: every iteration runs (Detectron2 raises on the first
non-finite total loss), the loss goes down, the gradient scaler ends finite and positive, and the
trained model's fp16-autocast detections match its fp32 ones. Skipped without CUDA
(``tools/gpu_check.sh`` runs it on the GPU machine).
"""

import math
import os

import ainnoface_d2  # noqa: F401
from ainnoface_d2 import get_ainnoface_cfg
from ainnoface_d2.engine import Trainer, size_protocol_mapper

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
