"""The AInnoFace meta-architecture: RetinaNet-style one-stage detector with SRN's two steps.

AInnoFace (arXiv 1905.01585) = RetinaNet + SRN (arXiv 1809.02693) + UnitBox IoU loss + S3FD max-out
background label. Per pyramid level (P2-P7, anchors 2S and 2*sqrt(2)*S, aspect 1.25):

* **STC** (two-step classification, SRN Sec. 3.1) on the shallow levels: step 1 classifies the
  anchors on the C-features with matching thresholds 0.7 / 0.3; anchors it calls background with
  probability > ``stc_neg_thresh`` (0.99) are excluded from step 2's classification loss in
  training and from the candidates at inference. Step 2 classifies on the P-features (0.5 / 0.4).
* **STR** (two-step regression, SRN Sec. 3.2) on the deep levels: step 1 regresses the anchors
  from the C-features; step 2 matches and regresses from the refined anchors (detached).
* Other levels are one-step (step 2 only).

Losses (SRN Eq. 1-2 with AInnoFace's regression loss): sigmoid focal loss for classification,
``-ln IoU`` for regression, each term normalised by the number of anchors its step labels face
(an EMA, as Detectron2's RetinaNet does; step 2's classification and box terms count the same
positives, whether or not STC removed some from the classification loss) and weighted from the
config. Loss names: ``loss_cls_stc``, ``loss_box_str`` (step 1), ``loss_cls``, ``loss_box`` (step
2). STC's filter can wait ``stc_warmup_iters`` iterations (at initialisation every face
probability is near the prior 0.01, the filter's threshold). Ground truth marked ``gt_ignore``
(WIDER's invalid faces, faces too small after augmentation) makes the anchors on it ignored.
"""

import logging
from typing import Dict, List, NamedTuple, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.modeling.anchor_generator import build_anchor_generator
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.meta_arch.dense_detector import DenseDetector, permute_to_N_HWA_K
from detectron2.structures import Boxes, ImageList, Instances
from detectron2.utils.events import get_event_storage
from fvcore.nn import sigmoid_focal_loss_jit
from torch import Tensor, nn

from .head import AInnoFaceHead
from .inference import decode_detections
from .losses import iou_loss
from .matching import match_anchors

__all__ = ["AInnoFace", "AnchorTargets"]

logger = logging.getLogger(__name__)


@META_ARCH_REGISTRY.register()
class AInnoFace(DenseDetector):
    @configurable
    def __init__(
        self,
        *,
        backbone,
        head: nn.Module,
        head_in_features: List[str],
        anchor_generator,
        box2box_transform: Box2BoxTransform,
        step1_matcher: Matcher,
        step2_matcher: Matcher,
        num_classes: int,
        stc_levels: List[int],
        str_levels: List[int],
        stc_neg_thresh: float = 0.99,
        stc_warmup_iters: int = 0,
        ignore_iof_thresh: float = 0.5,
        focal_loss_alpha: float = 0.25,
        focal_loss_gamma: float = 2.0,
        loss_weights: Dict[str, float] = None,
        test_score_thresh: float = 0.05,
        test_topk_candidates: int = 1000,
        test_nms_thresh: float = 0.4,
        max_detections_per_image: int = 750,
        pixel_mean,
        pixel_std,
        input_format: str = "RGB",
    ):
        """
        Args:
            head_in_features: the C-features of every level, then the P-features of every level.
            step1_matcher / step2_matcher: anchor labelling of the first / second step.
            stc_levels / str_levels: level indices with two-step classification / regression.
            stc_neg_thresh: step-1 background probability above which STC drops an anchor.
            stc_warmup_iters: training iterations before STC starts filtering step 2's
                classification loss.
            ignore_iof_thresh: background anchors covered by an ignore box at least this much
                (intersection / anchor area) are ignored.
            loss_weights: weights of "loss_cls_stc", "loss_box_str", "loss_cls", "loss_box".
        Other arguments are as in Detectron2's RetinaNet.
        """
        super().__init__(
            backbone, head, head_in_features, pixel_mean=pixel_mean, pixel_std=pixel_std
        )
        self.num_levels = len(head_in_features) // 2
        if len(head_in_features) != 2 * self.num_levels:
            raise ValueError(f"head_in_features must be C-levels + P-levels: {head_in_features}")
        for name, levels in (("STC_LEVELS", stc_levels), ("STR_LEVELS", str_levels)):
            if any(not 0 <= i < self.num_levels for i in levels) or len(set(levels)) != len(levels):
                raise ValueError(f"MODEL.AINNOFACE.{name}={levels}: need distinct level indices")
        self.anchor_generator = anchor_generator
        self.box2box_transform = box2box_transform
        self.step1_matcher = step1_matcher
        self.step2_matcher = step2_matcher
        self.num_classes = num_classes
        self.stc_levels = list(stc_levels)
        self.str_levels = list(str_levels)
        self.stc_neg_thresh = stc_neg_thresh
        self.stc_warmup_iters = int(stc_warmup_iters)
        self.ignore_iof_thresh = ignore_iof_thresh
        self.focal_loss_alpha = focal_loss_alpha
        self.focal_loss_gamma = focal_loss_gamma
        self.loss_weights = {"loss_cls_stc": 1.0, "loss_box_str": 1.0, "loss_cls": 1.0}
        self.loss_weights.update({"loss_box": 1.0, **(loss_weights or {})})
        self.test_score_thresh = test_score_thresh
        self.test_topk_candidates = test_topk_candidates
        self.test_nms_thresh = test_nms_thresh
        self.max_detections_per_image = max_detections_per_image
        self.input_format = input_format
        self._anchor_cache: Dict[Tuple, List[Boxes]] = {}

    @classmethod
    def from_config(cls, cfg):
        a = cfg.MODEL.AINNOFACE
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        p_features = list(a.IN_FEATURES)
        c_features = ["c" + f[1:] for f in p_features]
        missing = [f for f in c_features + p_features if f not in shapes]
        if missing:
            raise ValueError(f"backbone {cfg.MODEL.BACKBONE.NAME} lacks features {missing}")
        feature_shapes = [shapes[f] for f in p_features]
        return {
            "backbone": backbone,
            "head": AInnoFaceHead(cfg, feature_shapes),
            "head_in_features": c_features + p_features,
            "anchor_generator": build_anchor_generator(cfg, feature_shapes),
            "box2box_transform": Box2BoxTransform(weights=a.BBOX_REG_WEIGHTS),
            "step1_matcher": Matcher(
                a.STEP1_IOU_THRESHOLDS, a.STEP1_IOU_LABELS, allow_low_quality_matches=True
            ),
            "step2_matcher": Matcher(
                a.STEP2_IOU_THRESHOLDS, a.STEP2_IOU_LABELS, allow_low_quality_matches=True
            ),
            "num_classes": a.NUM_CLASSES,
            "stc_levels": a.STC_LEVELS,
            "str_levels": a.STR_LEVELS,
            "stc_neg_thresh": a.STC_NEG_THRESH,
            "stc_warmup_iters": (
                cfg.SOLVER.WARMUP_ITERS if a.STC_WARMUP_ITERS < 0 else a.STC_WARMUP_ITERS
            ),
            "ignore_iof_thresh": a.IGNORE_IOF_THRESH,
            "focal_loss_alpha": a.FOCAL_LOSS_ALPHA,
            "focal_loss_gamma": a.FOCAL_LOSS_GAMMA,
            "loss_weights": {
                "loss_cls_stc": a.LOSS_WEIGHT_STC,
                "loss_box_str": a.LOSS_WEIGHT_STR,
                "loss_cls": a.LOSS_WEIGHT_CLS,
                "loss_box": a.LOSS_WEIGHT_BOX,
            },
            "test_score_thresh": a.SCORE_THRESH_TEST,
            "test_topk_candidates": a.TOPK_CANDIDATES_TEST,
            "test_nms_thresh": a.NMS_THRESH_TEST,
            "max_detections_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "input_format": cfg.INPUT.FORMAT,
        }

    # ------------------------------------------------------------------ anchors
    def anchors(self, p_features: List[Tensor]) -> List[Boxes]:
        """Anchors of every level, cached per feature-map size (inputs repeat their sizes)."""
        key = (str(p_features[0].device),) + tuple(tuple(f.shape[-2:]) for f in p_features)
        anchors = self._anchor_cache.get(key)
        if anchors is None:
            if len(self._anchor_cache) >= 32:
                self._anchor_cache.clear()
            anchors = self.anchor_generator(p_features)
            self._anchor_cache[key] = anchors
        return anchors

    def _level_slices(self, anchors: List[Boxes]) -> List[slice]:
        ends = torch.tensor([len(a) for a in anchors]).cumsum(0).tolist()
        return [slice(e - len(a), e) for e, a in zip(ends, anchors)]

    def _refine(self, step1_deltas: List[Tensor], anchors: List[Boxes]) -> List[Tensor]:
        """Step-1 refined anchors of the STR levels, (N, R_l, 4) each, without gradient."""
        refined = []
        for deltas, lvl in zip(step1_deltas, self.str_levels):
            n, r, _ = deltas.shape
            a = anchors[lvl].tensor.unsqueeze(0).expand(n, r, 4).reshape(-1, 4)
            boxes = self.box2box_transform.apply_deltas(deltas.detach().reshape(-1, 4), a)
            refined.append(boxes.view(n, r, 4))
        return refined

    def _transpose(self, predictions):
        """The head's four lists of (N, A*K, H, W) maps as lists of (N, H*W*A, K) tensors."""
        dims = (self.num_classes, self.num_classes, 4, 4)
        return [[permute_to_N_HWA_K(x, d) for x in maps] for maps, d in zip(predictions, dims)]

    # ------------------------------------------------------------------ training
    def forward_training(self, images: ImageList, features, predictions, gt_instances):
        # fp32 losses also when the forward pass ran under bf16 autocast (SOLVER.AMP on a CPU).
        predictions = [[x.float() for x in maps] for maps in predictions]
        step1_logits, step2_logits, step1_deltas, step2_deltas = self._transpose(predictions)
        anchors = self.anchors(features[self.num_levels :])
        levels = self._level_slices(anchors)
        refined = self._refine(step1_deltas, anchors)
        targets = self.label_anchors(anchors, refined, gt_instances)
        step2_anchors = self._step2_anchors(anchors, refined, levels, len(gt_instances))

        terms: List[_LossTerm] = []
        if self.stc_levels:
            labels = cat([targets.step1_labels[:, levels[i]] for i in self.stc_levels], dim=1)
            terms.append(self._cls_term("loss_cls_stc", cat(step1_logits, dim=1), labels))
        if self.str_levels:
            str_slices = [levels[i] for i in self.str_levels]
            str_anchors = cat([anchors[i].tensor for i in self.str_levels])
            terms.append(
                self._box_term(
                    "loss_box_str",
                    str_anchors.unsqueeze(0).expand(len(gt_instances), -1, 4),
                    cat(step1_deltas, dim=1),
                    cat([targets.step1_labels[:, sl] for sl in str_slices], dim=1),
                    cat([targets.step1_boxes[:, sl] for sl in str_slices], dim=1),
                )
            )
        # STC: anchors that step 1 confidently calls background leave step 2's cls loss.
        valid2 = targets.step2_labels >= 0
        stc_keep = self._stc_keep(step1_logits) if self.stc_levels else []
        kept_stats = [
            (keep & valid2[:, levels[i]]).sum() / valid2[:, levels[i]].sum().clamp(min=1).float()
            for i, keep in zip(self.stc_levels, stc_keep)
        ]
        if self._stc_filter_on():
            valid2 = valid2.clone()
            for i, keep in zip(self.stc_levels, stc_keep):
                valid2[:, levels[i]] &= keep
        terms.append(
            self._cls_term("loss_cls", cat(step2_logits, dim=1), targets.step2_labels, valid2)
        )
        terms.append(
            self._box_term(
                "loss_box",
                step2_anchors,
                cat(step2_deltas, dim=1),
                targets.step2_labels,
                targets.step2_boxes,
            )
        )
        return self._normalise(terms, kept_stats, len(gt_instances))

    def _normalise(self, terms, kept_stats, num_images) -> Dict[str, Tensor]:
        """Divide each summed loss by the EMA of its positive count; log the counts and, per
        STC level, the kept fraction of its valid anchors. One host-device sync for all."""
        stats = torch.stack([t.num_pos.float() for t in terms] + kept_stats).tolist()
        storage = get_event_storage()
        for i, kept in zip(self.stc_levels, stats[len(terms) :]):
            level = self.head_in_features[self.num_levels + i]
            storage.put_scalar(f"stc_kept_fraction_{level}", kept)
        losses = {}
        for term, num_pos in zip(terms, stats):
            name = _STAT_NAMES[term.name]
            storage.put_scalar(f"num_pos_anchors_{name}", num_pos / num_images)
            normalizer = self._ema_update(f"loss_normalizer_{name}", max(num_pos, 1), 100)
            losses[term.name] = term.loss / normalizer * self.loss_weights[term.name]
        return losses

    def _cls_term(self, name, logits, labels, valid=None) -> "_LossTerm":
        """Summed focal loss of the valid anchors, normalised by the anchors labelled face
        (the same positives as the step's box term, whether or not STC filtered them)."""
        if valid is None:
            valid = labels >= 0
        faces = (labels >= 0) & (labels != self.num_classes)
        return _LossTerm(name, self._cls_loss(logits, labels, valid), faces.sum())

    def _box_term(self, name, anchors, deltas, labels, gt_boxes) -> "_LossTerm":
        """Summed IoU loss (AInnoFace) of the decoded boxes of the anchors labelled face."""
        faces = (labels >= 0) & (labels != self.num_classes)
        pred_boxes = self.box2box_transform.apply_deltas(deltas[faces], anchors[faces])
        loss = iou_loss(pred_boxes, gt_boxes[faces], reduction="sum")
        return _LossTerm(name, loss, faces.sum())

    def _step2_anchors(self, anchors, refined, levels, num_images) -> Tensor:
        """(N, R, 4) anchors of step 2: the refined ones on STR levels, the original elsewhere."""
        out = Boxes.cat(anchors).tensor.unsqueeze(0).repeat(num_images, 1, 1)
        for lvl, boxes in zip(self.str_levels, refined):
            out[:, levels[lvl]] = boxes
        return out

    def _stc_filter_on(self) -> bool:
        """Whether STC filters step 2's classification loss at this training iteration."""
        return get_event_storage().iter >= self.stc_warmup_iters

    def _stc_keep(self, step1_logits: List[Tensor]) -> List[Tensor]:
        """Per STC level, (N, R_l) masks of anchors whose step-1 face probability is high enough."""
        min_face_prob = 1.0 - self.stc_neg_thresh
        return [x.detach().sigmoid().amax(dim=2) > min_face_prob for x in step1_logits]

    def _cls_loss(self, logits: Tensor, labels: Tensor, valid: Tensor) -> Tensor:
        """Summed sigmoid focal loss of the valid anchors (label ``num_classes``: background)."""
        target = F.one_hot(labels[valid], num_classes=self.num_classes + 1)[:, :-1]
        return sigmoid_focal_loss_jit(
            logits[valid],
            target.to(logits.dtype),
            alpha=self.focal_loss_alpha,
            gamma=self.focal_loss_gamma,
            reduction="sum",
        )

    @torch.no_grad()
    def label_anchors(self, anchors: List[Boxes], refined: List[Tensor], gt_instances):
        """Label every anchor for both steps.

        Step 1 matches the original anchors (STEP1 thresholds). Step 2 matches the original
        anchors on non-STR levels and the step-1 refined anchors on STR levels (STEP2
        thresholds), all levels jointly, so each face is matched where it fits best.
        Ground truth with ``gt_ignore`` True is matched together with the faces: an anchor whose
        best match is an ignore box is ignored, and so is a background anchor that an ignore box
        covers (intersection / anchor area >= ``ignore_iof_thresh``).

        Returns:
            AnchorTargets: ``step1_labels``, ``step2_labels`` (N, R) int64: class index for
                faces, ``num_classes`` for background, -1 for ignored anchors;
                ``step1_boxes``, ``step2_boxes`` (N, R, 4): matched face boxes (meaningful
                for faces only).
        """
        all_anchors = Boxes.cat(anchors)
        levels = self._level_slices(anchors)
        out = ([], [], [], [])
        for img, gt in enumerate(gt_instances):
            faces, ignored = _split_ignored(gt)
            gt_boxes = Boxes.cat([faces.gt_boxes, ignored.gt_boxes]).tensor
            step1 = self._match(
                self.step1_matcher, faces, gt_boxes, len(ignored), all_anchors.tensor
            )
            step2_anchors = all_anchors.tensor.clone()
            for lvl, boxes in zip(self.str_levels, refined):
                step2_anchors[levels[lvl]] = boxes[img]
            step2 = self._match(self.step2_matcher, faces, gt_boxes, len(ignored), step2_anchors)
            for lst, x in zip(out, step1 + step2):
                lst.append(x)
        return AnchorTargets(*(torch.stack(x) for x in out))

    def _match(self, matcher: Matcher, faces: Instances, gt_boxes, num_ignored, anchors):
        """(labels (R,), boxes (R, 4)) of one image for one step; ``gt_boxes``: the faces, then
        ``num_ignored`` ignore boxes."""
        num_faces = len(faces)
        matched_idxs, match_labels, iof = match_anchors(matcher, gt_boxes, anchors, num_ignored)
        labels = torch.full_like(matched_idxs, self.num_classes)
        boxes = torch.zeros(len(matched_idxs), 4, device=matched_idxs.device)
        if num_faces > 0:
            is_face = matched_idxs < num_faces
            face_idxs = matched_idxs.clamp(max=num_faces - 1)
            labels = torch.where(is_face, faces.gt_classes[face_idxs], labels)
            boxes = faces.gt_boxes.tensor[face_idxs]
        labels[match_labels == 0] = self.num_classes
        labels[match_labels == -1] = -1
        if num_ignored:
            labels[(match_labels == 1) & (matched_idxs >= num_faces)] = -1
            covered = iof >= self.ignore_iof_thresh
            labels[(labels == self.num_classes) & covered] = -1
        return labels, boxes

    # ------------------------------------------------------------------ inference
    def forward_inference(self, images: ImageList, features, predictions):
        anchors = self.anchors(features[self.num_levels :])
        num, boxes, scores, classes = self.detect(predictions, anchors)
        results: List[Instances] = []
        for img, (n, image_size) in enumerate(zip(num.tolist(), images.image_sizes)):
            inst = Instances(image_size)
            inst.pred_boxes = Boxes(boxes[img, :n])
            inst.scores = scores[img, :n]
            inst.pred_classes = classes[img, :n].long()
            results.append(inst)
        return results

    def detect(self, predictions, anchors: List[Boxes], image_hw: Tensor | None = None):
        """The detections of a batch as fixed-shape tensors, from the head's outputs: the one
        post-processing of eager inference and of the exported graph (tensor operations only,
        see :func:`~ainnoface_d2.modeling.inference.decode_detections`).

        Two-step inference (SRN Sec. 3): on STC levels the step-2 face probability counts only
        where step 1's is above ``1 - stc_neg_thresh`` (else the score is 0); on STR levels the
        step-2 deltas refine the step-1 refined anchors.

        Args:
            predictions: the head's four lists of maps.
            anchors: the anchors of every level (``anchor_generator`` of the P-features).
            image_hw: (N, 2) height and width of every image to clip the boxes to, or None.

        Returns:
            num_detections (N,), detection_boxes (N, D, 4), detection_scores (N, D),
            detection_classes (N, D), D = ``max_detections_per_image``.
        """
        step1_logits, step2_logits, step1_deltas, step2_deltas = self._transpose(predictions)
        refined = dict(zip(self.str_levels, self._refine(step1_deltas, anchors)))
        stc_keep = dict(zip(self.stc_levels, self._stc_keep(step1_logits)))
        scores, level_anchors = [], []
        for lvl in range(self.num_levels):
            s = step2_logits[lvl].float().sigmoid()
            if lvl in stc_keep:
                s = s * stc_keep[lvl].unsqueeze(2)
            scores.append(s)
            level_anchors.append(refined[lvl] if lvl in refined else anchors[lvl].tensor)
        return decode_detections(
            scores,
            step2_deltas,
            level_anchors,
            self.box2box_transform,
            image_hw,
            num_anchors=self.anchor_generator.num_cell_anchors,
            score_thresh=self.test_score_thresh,
            topk=self.test_topk_candidates,
            nms_thresh=self.test_nms_thresh,
            max_detections=self.max_detections_per_image,
        )


# Suffix of each term's logged positive count and of its normaliser's attribute.
_STAT_NAMES = {"loss_cls_stc": "stc", "loss_box_str": "str", "loss_cls": "cls", "loss_box": "box"}


class AnchorTargets(NamedTuple):
    """Anchor labels and matched boxes of both steps (see ``AInnoFace.label_anchors``)."""

    step1_labels: Tensor
    step1_boxes: Tensor
    step2_labels: Tensor
    step2_boxes: Tensor


class _LossTerm(NamedTuple):
    name: str  # the loss key, e.g. "loss_cls"
    loss: Tensor  # summed over the anchors
    num_pos: Tensor  # positives of its step (its normaliser, before the EMA)


def _split_ignored(gt: Instances) -> Tuple[Instances, Instances]:
    """(faces, ignore boxes) of one image's ground truth (``gt_ignore`` marks the latter)."""
    if not gt.has("gt_ignore"):
        return gt, gt[torch.zeros(len(gt), dtype=torch.bool, device=gt.gt_boxes.device)]
    return gt[~gt.gt_ignore], gt[gt.gt_ignore]
