"""Chunked anchor matching (``ainnoface_d2.modeling.matching``) against Detectron2's Matcher on the
full IoU matrix: the same matches, labels and ignore-box coverage on hand-made cases (ties,
duplicate boxes, ignore boxes, no boxes, boxes that overlap no anchor), on a crowded random layout,
and, where ``../shared/widerface`` holds the real train annotations, on the most crowded WIDER FACE
train images at the paper's anchors."""

import math
from pathlib import Path

import ainnoface_d2  # noqa: F401
from ainnoface_d2 import get_ainnoface_cfg
from ainnoface_d2.data.wider_face_format import parse_bbx_gt
from ainnoface_d2.modeling.matching import match_anchors

import pytest
import torch
from _builtin_fixture import TINY_MODEL_OPTS
from detectron2.modeling import build_model
from detectron2.modeling.matcher import Matcher
from detectron2.structures import Boxes, Instances, pairwise_ioa, pairwise_iou

REPO = Path(__file__).resolve().parents[1]
WIDER_TRAIN = (
    REPO.parent / "shared" / "widerface" / "wider_face_split" / "wider_face_train_bbx_gt.txt"
)
PAPER = str(REPO / "configs" / "ainnoface_R50.yaml")
SMALL = str(REPO / "configs" / "ainnoface_R18_cpu.yaml")
STEP1 = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)
STEP2 = Matcher([0.4, 0.5], [0, -1, 1], allow_low_quality_matches=True)


# ---------------------------------------------------------------- the independent computation


def _full_iou(boxes, anchors, rows=256):
    """Detectron2's pairwise_iou, built in row blocks (the same values) to bound its temporaries."""
    parts = [
        pairwise_iou(Boxes(boxes[i : i + rows]), Boxes(anchors)) for i in range(0, len(boxes), rows)
    ]
    return torch.cat(parts) if parts else torch.zeros(0, len(anchors))


def reference_match(matcher, boxes, anchors, num_ignored):
    matched, labels = matcher(_full_iou(boxes, anchors))
    iof = None
    if num_ignored:
        ignored = boxes[len(boxes) - num_ignored :]
        iof = pairwise_ioa(Boxes(ignored), Boxes(anchors)).amax(dim=0)
    return matched, labels, iof


def reference_label(model, matcher, faces, ignored, anchors):
    """The model's labels and matched boxes of one step, from the full matrices."""
    boxes = torch.cat([faces.gt_boxes.tensor, ignored.gt_boxes.tensor])
    matched, match_labels, iof = reference_match(matcher, boxes, anchors, len(ignored))
    num_faces, bg = len(faces), model.num_classes
    labels = torch.full_like(matched, bg)
    out_boxes = torch.zeros(len(matched), 4)
    if num_faces:
        idx = matched.clamp(max=num_faces - 1)
        labels = torch.where(matched < num_faces, faces.gt_classes[idx], labels)
        out_boxes = faces.gt_boxes.tensor[idx]
    labels[match_labels == 0] = bg
    labels[match_labels == -1] = -1
    if len(ignored):
        labels[(match_labels == 1) & (matched >= num_faces)] = -1
        labels[(labels == bg) & (iof >= model.ignore_iof_thresh)] = -1
    return labels, out_boxes


def assert_same(boxes, anchors, num_ignored=0, pairs_per_chunk=None, matchers=(STEP1, STEP2)):
    kwargs = {} if pairs_per_chunk is None else {"pairs_per_chunk": pairs_per_chunk}
    for matcher in matchers:
        got = match_anchors(matcher, boxes, anchors, num_ignored, **kwargs)
        want = reference_match(matcher, boxes, anchors, num_ignored)
        assert torch.equal(got.matched_idxs, want[0])
        assert torch.equal(got.match_labels, want[1])
        if num_ignored:
            assert torch.equal(got.iof, want[2])
        else:
            assert got.iof is None


# ---------------------------------------------------------------- hand-made cases


def grid_anchors(size=64, stride=8, side=16.0):
    c = torch.arange(stride / 2, size, stride, dtype=torch.float32)
    cy, cx = torch.meshgrid(c, c, indexing="ij")
    h = side / 2
    return torch.stack([cx - h, cy - h, cx + h, cy + h], dim=-1).reshape(-1, 4)


@pytest.mark.parametrize("pairs_per_chunk", [1, 7, 64, None])
def test_ties_duplicates_and_chunk_borders(pairs_per_chunk):
    anchors = grid_anchors()
    boxes = torch.tensor(
        [
            [8.0, 0.0, 24.0, 16.0],  # straddles two anchors exactly: a tie at its highest IoU
            [8.0, 0.0, 24.0, 16.0],  # its duplicate: ties across boxes at every anchor
            [30.0, 30.0, 34.0, 33.0],  # small: only low-quality matches
            [0.0, 40.0, 64.0, 64.0],  # large: many anchors in every band
        ]
    )
    assert_same(boxes, anchors, 0, pairs_per_chunk)
    matched, labels = STEP1(_full_iou(boxes, anchors))
    tied = (_full_iou(boxes[:1], anchors)[0] == _full_iou(boxes[:1], anchors)[0].max()).sum()
    assert tied >= 2 and (labels == 1).sum() >= tied  # the case does hold ties


@pytest.mark.parametrize("pairs_per_chunk", [5, None])
def test_ignore_boxes_covering_anchors(pairs_per_chunk):
    anchors = grid_anchors()
    faces = torch.tensor([[4.0, 4.0, 20.0, 20.0], [40.0, 8.0, 56.0, 22.0]])
    ignored = torch.tensor([[0.0, 32.0, 40.0, 64.0], [44.0, 44.0, 50.0, 50.0]])
    boxes = torch.cat([faces, ignored])
    assert_same(boxes, anchors, 2, pairs_per_chunk)
    got = match_anchors(STEP2, boxes, anchors, 2, pairs_per_chunk=pairs_per_chunk or 1 << 22)
    assert (got.iof >= 0.5).sum() > 4  # the ignore box covers anchors


def test_no_boxes_and_only_ignore_boxes():
    anchors = grid_anchors()
    assert_same(torch.zeros(0, 4), anchors, 0)
    got = match_anchors(STEP1, torch.zeros(0, 4), anchors)
    assert (got.match_labels == 0).all() and (got.matched_idxs == 0).all()
    only_ignored = torch.tensor([[10.0, 10.0, 30.0, 30.0], [0.0, 0.0, 64.0, 64.0]])
    assert_same(only_ignored, anchors, 2, pairs_per_chunk=9)
    assert_same(torch.zeros(0, 4), torch.zeros(0, 4), 0)


def test_a_box_that_overlaps_no_anchor_labels_every_anchor():
    """Detectron2's low-quality rule: a box whose highest IoU is 0 ties with every anchor."""
    anchors = grid_anchors()
    boxes = torch.tensor([[4.0, 4.0, 20.0, 20.0], [200.0, 200.0, 220.0, 220.0]])
    assert_same(boxes, anchors, 0, pairs_per_chunk=3)
    assert (match_anchors(STEP1, boxes, anchors).match_labels == 1).all()


# ---------------------------------------------------------------- crowded layouts


def crowded_boxes(n, size, seed):
    g = torch.Generator().manual_seed(seed)
    side = 4 + 28 * torch.rand(n, generator=g) ** 2
    xy = torch.rand(n, 2, generator=g) * (size - side[:, None])
    boxes = torch.cat([xy, xy + side[:, None] * torch.tensor([1.0, 1.25])], dim=1)
    boxes[n // 2 : n // 2 + 5] = boxes[:5]  # duplicates
    return boxes.round()  # integer corners, as WIDER's: many exact ties


def test_crowded_random_layout_through_the_model():
    """A few hundred faces and ignore boxes on a 256 px image: the model's labels and matched boxes
    of both steps, with refined anchors on the STR levels, equal the full-matrix computation."""
    opts = []
    for k, v in {**TINY_MODEL_OPTS, "MODEL.AINNOFACE.IGNORE_IOF_THRESH": 0.5}.items():
        opts += [k, v]
    model = build_model(get_ainnoface_cfg(SMALL, opts))
    boxes = crowded_boxes(400, 256, seed=0)
    ignore = torch.rand(len(boxes), generator=torch.Generator().manual_seed(1)) < 0.15
    check_model_labels(model, boxes, ignore, (256, 256))


def check_model_labels(model, boxes, ignore, image_hw, seed=0):
    strides = [
        model.backbone.output_shape()[f].stride for f in model.head_in_features[model.num_levels :]
    ]
    feats = [
        torch.zeros(1, 1, math.ceil(image_hw[0] / s), math.ceil(image_hw[1] / s)) for s in strides
    ]
    anchors = model.anchor_generator(feats)
    g = torch.Generator().manual_seed(seed)
    refined = []
    for lvl in model.str_levels:
        a = anchors[lvl].tensor
        refined.append((a + 6 * torch.randn(a.shape, generator=g)).unsqueeze(0))
    gt = Instances(image_hw)
    gt.gt_boxes = Boxes(boxes)
    gt.gt_classes = torch.zeros(len(boxes), dtype=torch.int64)
    gt.gt_ignore = ignore
    got = model.label_anchors(anchors, refined, [gt])
    faces, ignored = gt[~ignore], gt[ignore]
    step1_anchors = Boxes.cat(anchors).tensor
    step2_anchors = step1_anchors.clone()
    ends = torch.tensor([len(a) for a in anchors]).cumsum(0).tolist()
    for lvl, r in zip(model.str_levels, refined):
        step2_anchors[ends[lvl] - len(anchors[lvl]) : ends[lvl]] = r[0]
    for step, matcher, a in (
        (1, model.step1_matcher, step1_anchors),
        (2, model.step2_matcher, step2_anchors),
    ):
        labels, matched = reference_label(model, matcher, faces, ignored, a)
        assert torch.equal(getattr(got, f"step{step}_labels")[0], labels)
        face = labels >= 0
        face &= labels != model.num_classes
        assert face.sum() > 0
        assert torch.equal(getattr(got, f"step{step}_boxes")[0][face], matched[face])


def _most_crowded_train_images(count):
    images = parse_bbx_gt(WIDER_TRAIN)
    images.sort(key=lambda im: -len(im.boxes))
    return images[:count]


@pytest.mark.skipif(not WIDER_TRAIN.is_file(), reason="needs ../shared/widerface")
@pytest.mark.parametrize("rank", [0, 6, 10])
def test_crowded_wider_train_layouts_at_the_paper_anchors(rank):
    """The 1st (2_Demonstration_Demonstrators_2_371, 1,968 boxes), 7th and 11th most crowded train
    images, their invalid faces as ignore boxes, at the paper's anchors (P2-P7) on a 1024 px wide
    image as tall as the boxes need (at least 683 px)."""
    image = _most_crowded_train_images(rank + 1)[rank]
    assert len(image.boxes) > 500
    xywh = torch.tensor(image.boxes, dtype=torch.float32)
    keep = (xywh[:, 2] > 0) & (xywh[:, 3] > 0)
    boxes = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)[keep]
    ignore = torch.tensor(image.attributes[:, 3] == 1)[keep]
    height = max(683, math.ceil(float(boxes[:, 3].max())))
    model = build_model(get_ainnoface_cfg(PAPER, ["MODEL.DEVICE", "cpu"]))
    check_model_labels(model, boxes, ignore, (height, 1024), seed=rank)
