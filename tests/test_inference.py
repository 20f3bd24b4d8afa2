"""The tensor-only post-processing (ainnoface_d2.modeling.inference.decode_detections) against a
per-image reference written with Detectron2/torchvision calls, and SRN's small-map rule."""

import math

import ainnoface_d2  # noqa: F401
from ainnoface_d2 import get_ainnoface_cfg
from ainnoface_d2.modeling.inference import SMALL_MAP_LOCATIONS, decode_detections

import pytest
import torch
from _builtin_fixture import SMALL_CONFIG, TINY_MODEL_OPTS
from detectron2.modeling import build_model
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import ImageList
from torchvision.ops import nms


def _reference(scores, deltas, anchors, b2b, thresh, topk, nms_thresh, max_det, small):
    """One image at a time, level by level, as Detectron2's RetinaNet decodes (threshold, top-k,
    decode), SRN's rule for small maps, then one NMS and the best ``max_det``."""
    out = []
    for img in range(scores[0].shape[0]):
        boxes, kept = [], []
        for s, d, a in zip(scores, deltas, anchors):
            s = s[img].reshape(-1)  # K = 1
            t = 0.0 if s.numel() // 2 < small else thresh  # 2 anchors per location
            idx = (s > t).nonzero().squeeze(1)
            top = s[idx].topk(min(topk, idx.numel()))
            idx = idx[top.indices]
            boxes.append(b2b.apply_deltas(d[img][idx], a[idx]))
            kept.append(top.values)
        boxes, kept = torch.cat(boxes), torch.cat(kept)
        keep = nms(boxes, kept, nms_thresh)[:max_det]
        out.append((boxes[keep], kept[keep]))
    return out


@pytest.mark.parametrize("thresh", [0.05, 0.5])
def test_batched_decoding_equals_per_image_reference(thresh):
    g = torch.Generator().manual_seed(0)
    b2b = Box2BoxTransform(weights=(1.0, 1.0, 1.0, 1.0))
    n, sizes = 3, [400, 90, 30]  # anchors per level: 200, 45 and 15 locations
    scores = [torch.rand(n, r, 1, generator=g) for r in sizes]
    deltas = [torch.randn(n, r, 4, generator=g) * 0.2 for r in sizes]
    anchors = []
    for r in sizes:
        xy = torch.rand(r, 2, generator=g) * 200
        wh = torch.rand(r, 2, generator=g) * 40 + 8
        anchors.append(torch.cat([xy, xy + wh], dim=1))
    args = dict(score_thresh=thresh, topk=50, nms_thresh=0.4, max_detections=60)
    num, boxes, got_scores, classes = decode_detections(
        scores, deltas, anchors, b2b, num_anchors=[2, 2, 2], **args
    )
    want = _reference(scores, deltas, anchors, b2b, thresh, 50, 0.4, 60, SMALL_MAP_LOCATIONS)
    assert boxes.shape == (3, 60, 4) and got_scores.shape == (3, 60) and num.dtype == torch.int32
    for i, (w_boxes, w_scores) in enumerate(want):
        k = int(num[i])
        assert k == len(w_scores) > 0
        assert torch.allclose(got_scores[i, :k], w_scores)
        assert torch.allclose(boxes[i, :k], w_boxes, atol=1e-4)
        assert (got_scores[i, k:] == 0).all() and (boxes[i, k:] == 0).all()
        assert (classes[i] == 0).all()


def test_boxes_are_clipped_to_each_image():
    b2b = Box2BoxTransform(weights=(1.0, 1.0, 1.0, 1.0))
    anchors = [torch.tensor([[-10.0, -5.0, 50.0, 300.0]])]
    scores = [torch.full((2, 1, 1), 0.9)]
    deltas = [torch.zeros(2, 1, 4)]
    hw = torch.tensor([[100, 40], [400, 30]])
    args = dict(num_anchors=[1], score_thresh=0.05, topk=5, nms_thresh=0.4, max_detections=3)
    _, boxes, _, _ = decode_detections(scores, deltas, anchors, b2b, hw, **args)
    assert boxes[0, 0].tolist() == [0.0, 0.0, 40.0, 100.0]
    assert boxes[1, 0].tolist() == [0.0, 0.0, 30.0, 300.0]


def _tiny_model():
    opts = []
    for k, v in TINY_MODEL_OPTS.items():
        opts += [k, v]
    return build_model(get_ainnoface_cfg(SMALL_CONFIG, opts)).eval()


def test_small_maps_are_not_thresholded():
    """SRN's test: a level with fewer than 120 locations keeps candidates below the 0.05 score
    threshold; larger levels do not. 128x128 image: P3 has 16x16 = 256 locations, P6 2x2."""
    model = _tiny_model()
    shapes = [(128 // 2 ** (i + 2),) * 2 for i in range(6)]
    feats = [torch.zeros(1, 1, *s) for s in shapes] * 2
    step1_logits = [torch.full((1, 2, *shapes[i]), 5.0) for i in model.stc_levels]
    step2_logits = [torch.full((1, 2, *s), -200.0) for s in shapes]  # probability 0
    step1_deltas = [torch.zeros(1, 8, *shapes[i]) for i in model.str_levels]
    step2_deltas = [torch.zeros(1, 8, *s) for s in shapes]
    low = math.log(0.02 / 0.98)  # probability 0.02 < 0.05
    step2_logits[1][0, 0, 3, 3] = low  # P3: thresholded away
    step2_logits[4][0, 0, 1, 0] = low  # P6: kept
    preds = (step1_logits, step2_logits, step1_deltas, step2_deltas)
    images = ImageList(torch.zeros(1, 3, 128, 128), [(128, 128)])
    res = model.forward_inference(images, feats, preds)[0]
    assert len(res) == 1
    assert abs(res.scores[0].item() - 0.02) < 1e-6
    # P6 (stride 64), cell (1, 0): centre (32, 96), first anchor of area 128^2
    w, h = 128 / math.sqrt(1.25), 128 * math.sqrt(1.25)
    want = torch.tensor([32 - w / 2, 96 - h / 2, 32 + w / 2, 96 + h / 2])
    assert torch.allclose(res.pred_boxes.tensor[0], want, atol=1e-3)
    step2_logits[1][0, 0, 3, 3] = math.log(0.06 / 0.94)  # above the threshold: kept on P3 too
    assert len(model.forward_inference(images, feats, preds)[0]) == 2
