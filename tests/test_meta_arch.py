"""ainnoface_d2/modeling/meta_arch.py: SRN's training mechanics, each checked directly (refined
anchors detached, STC filtering step 2's classification loss and its warm-up, the normalisers,
ignore boxes in the matching, the prior bias)."""

import os

import ainnoface_d2  # noqa: F401
from ainnoface_d2 import get_ainnoface_cfg
from ainnoface_d2.data.augmentations import ResizeSquare
from ainnoface_d2.data.mapper import FaceDatasetMapper

import cv2
import numpy as np
import pytest
import torch
from _builtin_fixture import TINY_MODEL_OPTS
from detectron2.modeling import build_model
from detectron2.modeling.meta_arch.dense_detector import permute_to_N_HWA_K
from detectron2.structures import Boxes, BoxMode, ImageList, Instances
from detectron2.utils.events import EventStorage
from fvcore.nn import sigmoid_focal_loss_jit

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = os.path.join(REPO, "configs", "ainnoface_R18_cpu.yaml")
R50 = os.path.join(REPO, "configs", "ainnoface_R50.yaml")
R152 = os.path.join(REPO, "configs", "ainnoface_R152.yaml")
SIZE = 256


def tiny_model(**overrides):
    opts = []
    for k, v in {**TINY_MODEL_OPTS, **overrides}.items():
        opts += [k, v]
    return build_model(get_ainnoface_cfg(SMALL, opts))


def instances(boxes, ignore=None):
    inst = Instances((SIZE, SIZE))
    inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.gt_classes = torch.zeros(len(inst.gt_boxes), dtype=torch.int64)
    if ignore is not None:
        inst.gt_ignore = torch.tensor(ignore, dtype=torch.bool)
    return inst


# A small face (P2-P4 anchors) and a large one (P5-P7 anchors).
FACES = [[20.0, 20.0, 36.0, 40.0], [100.0, 60.0, 200.0, 185.0]]


def head_outputs(model, stc_logit, seed=0):
    """Random head outputs for one SIZE x SIZE image, leaves that require grad; step-1 logits
    of every STC level set to ``stc_logit`` (a number, or one per level)."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(SIZE // 2 ** (i + 2),) * 2 for i in range(model.num_levels)]
    stc = stc_logit if isinstance(stc_logit, list | tuple) else [stc_logit] * 3

    def rand(c, s, scale):
        return (torch.randn(1, c, *s, generator=g) * scale).requires_grad_()

    step1_logits = [torch.full((1, 2, *shapes[i]), float(v)) for i, v in zip(model.stc_levels, stc)]
    for x in step1_logits:
        x.requires_grad_()
    step2_logits = [rand(2, s, 1.0) for s in shapes]
    step1_deltas = [rand(8, shapes[i], 0.1) for i in model.str_levels]
    step2_deltas = [rand(8, s, 0.1) for s in shapes]
    feats = [torch.zeros(1, 1, *s) for s in shapes] * 2
    return feats, [step1_logits, step2_logits, step1_deltas, step2_deltas]


def train_losses(model, preds, feats, gt, iteration=0):
    """forward_training at ``iteration`` with fresh loss normalisers."""
    for name in [n for n in vars(model) if n.startswith("loss_normalizer_")]:
        delattr(model, name)
    images = ImageList(torch.zeros(1, 3, SIZE, SIZE), [(SIZE, SIZE)])
    with EventStorage(start_iter=iteration) as storage:
        losses = model.forward_training(images, feats, preds, [gt])
    return losses, storage


def test_step2_box_loss_sends_no_gradient_into_step1_deltas():
    """SRN detaches the refined anchors: step 2's box loss must not train step 1's regressor."""
    model = tiny_model()
    feats, preds = head_outputs(model, stc_logit=0.0)
    losses, _ = train_losses(model, preds, feats, instances(FACES))
    step1_deltas, step2_deltas = preds[2], preds[3]
    grads = torch.autograd.grad(losses["loss_box"], step1_deltas, allow_unused=True)
    assert all(g is None or torch.count_nonzero(g) == 0 for g in grads)
    # the test can fail: the same loss does reach step 2's deltas on the STR levels, and step 1's
    # own box loss reaches step 1's deltas
    grads2 = torch.autograd.grad(losses["loss_box"], step2_deltas[3:], retain_graph=True)
    assert any(torch.count_nonzero(g) > 0 for g in grads2)
    grads1 = torch.autograd.grad(losses["loss_box_str"], step1_deltas, allow_unused=True)
    assert any(g is not None and torch.count_nonzero(g) > 0 for g in grads1)


def _changed_stc_step2_logits(preds, seed=1):
    g = torch.Generator().manual_seed(seed)
    new = [list(p) for p in preds]
    new[1] = [
        x + torch.randn(x.shape, generator=g) * 3 if i < 3 else x for i, x in enumerate(new[1])
    ]
    return new


def test_stc_filters_step2_classification_loss_in_training():
    """With every step-1 face probability below 0.01 on P2-P4, step 2's logits there do not
    change loss_cls; with probabilities above it, they do."""
    model = tiny_model()
    gt = instances(FACES)
    for stc_logit, filtered in ((-6.0, True), (-4.0, False)):  # p = 0.0025 / 0.018
        feats, preds = head_outputs(model, stc_logit)
        before = train_losses(model, preds, feats, gt)[0]["loss_cls"]
        after = train_losses(model, _changed_stc_step2_logits(preds), feats, gt)[0]["loss_cls"]
        assert torch.equal(before, after) == filtered, stc_logit


def test_stc_warmup_leaves_the_filter_off_until_its_iteration():
    model = tiny_model(**{"MODEL.AINNOFACE.STC_WARMUP_ITERS": 10})
    assert model.stc_warmup_iters == 10
    gt = instances(FACES)
    feats, preds = head_outputs(model, -6.0)
    changed = _changed_stc_step2_logits(preds)
    for iteration, filtered in ((0, False), (9, False), (10, True), (500, True)):
        before = train_losses(model, preds, feats, gt, iteration)[0]["loss_cls"]
        after = train_losses(model, changed, feats, gt, iteration)[0]["loss_cls"]
        assert torch.equal(before, after) == filtered, iteration
    # -1 means the LR warm-up (SOLVER.WARMUP_ITERS, 100 in the CPU config)
    assert tiny_model(**{"MODEL.AINNOFACE.STC_WARMUP_ITERS": -1}).stc_warmup_iters == 100


def test_step2_cls_and_box_normalised_by_the_same_positives():
    """loss_cls = focal loss over the anchors STC keeps / N, loss_box over the faces / N, with N
    the step-2 face anchors (an EMA from 100 with momentum 0.9), computed here by hand."""
    model = tiny_model()
    gt = instances(FACES)
    feats, preds = head_outputs(model, stc_logit=-6.0)  # STC drops every P2-P4 anchor
    losses, _ = train_losses(model, preds, feats, gt)
    anchors = model.anchors(feats[model.num_levels :])
    refined = model._refine([permute_to_N_HWA_K(x, 4) for x in preds[2]], anchors)
    targets = model.label_anchors(anchors, refined, [gt])
    labels = targets.step2_labels[0]
    num_faces = int((labels == 0).sum())
    num_valid = int((labels >= 0).sum())
    assert 0 < num_faces < num_valid
    expected_norm = 0.9 * 100 + 0.1 * num_faces
    assert model.loss_normalizer_cls == pytest.approx(expected_norm)
    assert model.loss_normalizer_box == pytest.approx(expected_norm)
    # the focal sum over the STR levels only (P2-P4 filtered), in the head's anchor order
    r_stc = sum(len(anchors[i]) for i in range(3))
    logits = torch.cat([permute_to_N_HWA_K(x, 1) for x in preds[1]], dim=1)[0, r_stc:, 0]
    lab = labels[r_stc:]
    valid = lab >= 0
    focal = sigmoid_focal_loss_jit(
        logits[valid], (lab[valid] == 0).float(), alpha=0.25, gamma=2.0, reduction="sum"
    )
    torch.testing.assert_close(losses["loss_cls"], focal / expected_norm)


def test_logs_kept_fraction_of_valid_anchors_per_stc_level():
    model = tiny_model()
    gt = instances(FACES)
    feats, preds = head_outputs(model, [-6.0, -4.0, 0.0])
    preds[0][2].data[:, 0] = -6.0  # P4: anchor 0 of every cell dropped, anchor 1 kept
    _, storage = train_losses(model, preds, feats, gt)
    anchors = model.anchors(feats[model.num_levels :])
    refined = model._refine([permute_to_N_HWA_K(x, 4) for x in preds[2]], anchors)
    labels = model.label_anchors(anchors, refined, [gt]).step2_labels[0]
    start = len(anchors[0]) + len(anchors[1])
    p4 = labels[start : start + len(anchors[2])]
    valid = p4 >= 0
    # anchors are ordered (cell, anchor): odd positions are anchor 1
    expected_p4 = (valid[1::2].sum() / valid.sum()).item()
    latest = {k: v[0] for k, v in storage.latest().items()}
    assert latest["stc_kept_fraction_p2"] == 0.0
    assert latest["stc_kept_fraction_p3"] == 1.0
    assert latest["stc_kept_fraction_p4"] == pytest.approx(expected_p4)
    assert 0.3 < expected_p4 < 0.7


def test_label_anchors_ignores_anchors_on_ignore_boxes():
    model = tiny_model()
    # one STC level with four anchors, one STR level with one anchor
    a0 = Boxes(
        torch.tensor(
            [[0.0, 0, 10, 10], [100, 100, 110, 110], [200, 200, 210, 210], [300, 0, 310, 10]]
        )
    )
    a3 = Boxes(torch.tensor([[0.0, 100, 50, 150]]))
    empty = Boxes(torch.zeros(0, 4))
    anchors = [a0, empty, empty, a3, empty, empty]
    refined = [torch.tensor([[[0.0, 100, 50, 150]]]), torch.zeros(1, 0, 4), torch.zeros(1, 0, 4)]
    boxes = [
        [0, 0, 10, 12],  # face: IoU 0.83 with anchor 0
        [100, 100, 110, 111],  # ignore: IoU 0.91 with anchor 1 (would be a face)
        [195, 195, 260, 260],  # ignore: IoU 0.02 with anchor 2, but covers it (IoF 1)
        [0, 100, 50, 150],  # ignore: the STR anchor's own box
    ]
    with_ignore = instances(boxes, ignore=[False, True, True, True])
    t = model.label_anchors(anchors, refined, [with_ignore])
    # 0 = face, 1 = background, -1 = ignored; anchor 3 is far from everything
    assert t.step1_labels.tolist() == [[0, -1, -1, 1, -1]]
    assert t.step2_labels.tolist() == [[0, -1, -1, 1, -1]]
    # the same boxes as faces: anchors 1, 2 (the low-quality match of the third box) and 4
    t = model.label_anchors(anchors, refined, [instances(boxes, ignore=[False] * 4)])
    assert t.step2_labels.tolist() == [[0, 0, 0, 1, 0]]
    # only ignore boxes: nothing is a face
    only = instances(boxes[1:], ignore=[True] * 3)
    assert model.label_anchors(anchors, refined, [only]).step2_labels.tolist() == [
        [1, -1, -1, 1, -1]
    ]
    # IoF threshold: a box covering 40% of anchor 3 ignores it only below 0.4
    part = instances([[306, 0, 310, 10]], ignore=[True])
    labels = model.label_anchors(anchors, refined, [part]).step2_labels[0]
    assert labels[3] == -1  # its best (and only) match: the low-quality match of the box
    model.ignore_iof_thresh = 0.3
    cover = instances([[306, 0, 310, 10], [307, 0, 310, 10]], ignore=[True, True])
    assert model.label_anchors(anchors, refined, [cover]).step2_labels[0, 3] == -1


def test_ignored_anchors_leave_both_classification_losses():
    """A face turned into an ignore box removes its anchors from loss_cls_stc and loss_cls: the
    logits of the ignored anchors get no gradient from either, those of the others do."""
    model = tiny_model()
    feats, preds = head_outputs(model, stc_logit=0.0)
    gt = instances(FACES, ignore=[True, False])
    losses = train_losses(model, preds, feats, gt)[0]
    anchors = model.anchors(feats[model.num_levels :])
    refined = model._refine([permute_to_N_HWA_K(x, 4) for x in preds[2]], anchors)
    targets = model.label_anchors(anchors, refined, [gt])
    r_stc = sum(len(anchors[i]) for i in range(3))
    for loss, logits, labels in (
        (losses["loss_cls_stc"], preds[0], targets.step1_labels[0, :r_stc]),
        (losses["loss_cls"], preds[1], targets.step2_labels[0]),
    ):
        grads = torch.autograd.grad(loss, logits, retain_graph=True)
        grads = torch.cat([permute_to_N_HWA_K(g, 1) for g in grads], dim=1)[0, :, 0]
        ignored = labels == -1
        assert ignored.sum() > 0 and torch.count_nonzero(grads[ignored]) == 0
        assert torch.count_nonzero(grads[~ignored]) > 0
    # the same face as a face: its anchors are positives and get gradient
    as_face = model.label_anchors(anchors, refined, [instances(FACES)]).step2_labels[0]
    assert (as_face[targets.step2_labels[0] == -1] == 0).any()


def test_training_step_from_the_mapper_with_ignore_boxes(tmp_path):
    """The mapper's ignore boxes reach the model: the background anchors on the invalid face
    leave the classification loss (it drops), the number of face anchors stays the same."""
    path = tmp_path / "image.png"
    cv2.imwrite(str(path), (np.random.RandomState(0).rand(SIZE, SIZE, 3) * 255).astype(np.uint8))
    annos = [
        {"bbox": [20.0, 20.0, 16.0, 20.0], "bbox_mode": BoxMode.XYWH_ABS, "iscrowd": 0},
        {"bbox": [100.0, 60.0, 100.0, 125.0], "bbox_mode": BoxMode.XYWH_ABS, "iscrowd": 1},
    ]
    d = {"file_name": str(path), "image_id": 0, "height": SIZE, "width": SIZE, "annotations": annos}
    model = tiny_model()
    results = {}
    for ignore in (False, True):
        mapper = FaceDatasetMapper(
            True, augmentations=[ResizeSquare(SIZE)], image_format="RGB", ignore_regions=ignore
        )
        batch = [mapper(d)]
        assert len(batch[0]["instances"]) == 1 + ignore
        for name in [n for n in vars(model) if n.startswith("loss_normalizer_")]:
            delattr(model, name)
        with EventStorage() as storage:
            losses = model(batch)
        assert all(torch.isfinite(v) for v in losses.values())
        results[ignore] = (losses, {k: v[0] for k, v in storage.latest().items()})
    (ignored, ignored_stats), (plain, plain_stats) = results[True], results[False]
    assert ignored_stats["num_pos_anchors_cls"] == plain_stats["num_pos_anchors_cls"] > 0
    assert ignored["loss_cls"] < plain["loss_cls"]
    torch.testing.assert_close(ignored["loss_box"], plain["loss_box"])


def _unflatten(flat, like):
    """(1, sum H*W*A, 1) back to maps shaped as ``like`` (1, A, H, W each)."""
    out, start = [], 0
    for x in like:
        _, a, h, w = x.shape
        n = h * w * a
        out.append(flat[:, start : start + n].view(1, h, w, a).permute(0, 3, 1, 2))
        start += n
    return out


def test_prior_bias_gives_face_probability_prior_at_init():
    """RetinaNet's prior: bias = -ln((1 - p) / p), so sigmoid(bias) = p, not 1 - p."""
    for prior in (0.01, 0.1):
        model = tiny_model(**{"MODEL.AINNOFACE.PRIOR_PROB": prior, "MODEL.AINNOFACE.HEAD_NORM": ""})
        bias = model.head.cls_score.bias
        torch.testing.assert_close(bias.sigmoid(), torch.full_like(bias, prior))
        x = torch.randn(1, 32, 16, 16)
        prob = model.head.classify(x, 1).sigmoid()  # P3: no max-out
        assert abs(prob.mean().item() - prior) < 0.2 * prior


def _iou_iof(a, b):
    """IoU and intersection / area of ``b`` of every box of ``a`` (rows) with every box of ``b``
    (columns), XYXY, in numpy."""
    a, b = np.asarray(a, np.float64)[:, None], np.asarray(b, np.float64)[None]
    w = (np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])).clip(min=0)
    h = (np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])).clip(min=0)
    inter = w * h
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / (area_a + area_b - inter), inter / area_b


@pytest.mark.parametrize("thresh", [0.5, 0.8])
def test_background_anchors_covered_by_an_ignore_box_are_ignored(thresh):
    """The IoF rule, against numpy: a background anchor (IoU < 0.4 with every box, and no box's
    best anchor) is ignored when an ignore box covers at least IGNORE_IOF_THRESH of it, and stays
    background below that."""
    model = tiny_model(**{"MODEL.AINNOFACE.IGNORE_IOF_THRESH": thresh})
    xy = np.arange(0.0, 100.0, 5.0)
    grid = np.array([[x, y, x + 10, y + 10] for y in xy for x in xy])  # 400 anchors, 10 x 10
    face, ignore = [70.0, 70.0, 82.0, 84.0], [22.0, 23.0, 61.0, 47.0]
    empty = Boxes(torch.zeros(0, 4))
    anchors = [Boxes(torch.tensor(grid, dtype=torch.float32))] + [empty] * 5
    refined = [torch.zeros(1, 0, 4)] * 3
    gt = instances([face, ignore], ignore=[False, True])
    labels = model.label_anchors(anchors, refined, [gt]).step2_labels[0].numpy()

    iou, iof = _iou_iof([face, ignore], grid)
    best = np.isclose(iou, iou.max(axis=1, keepdims=True)).any(axis=0)  # low-quality matches
    background = (iou.max(axis=0) < 0.4) & ~best
    covered = iof[1] >= thresh
    bg = model.num_classes
    assert (background & covered).sum() >= 3 and (background & ~covered & (iof[1] > 0)).any()
    assert (labels[background & covered] == -1).all()
    assert (labels[background & ~covered] == bg).all()
    # the ignore box's best anchors (inside it) are ignored by their match, the face's are faces
    assert (labels[best & (iou[1] == iou[1].max())] == -1).all()
    assert (labels[iou[0] >= 0.5] == 0).all()
