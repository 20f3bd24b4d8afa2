"""``add_ainnoface_config``: every AInnoFace-specific config key, with its default.

Defaults follow SRN's official configuration and the AInnoFace paper (see README.md, "Deviations
from the papers"); a config that departs from them says so, as ``configs/ainnoface_R18_cpu.yaml``
does. Standard Detectron2 keys (``MODEL.RESNETS``, ``MODEL.FPN``, ``MODEL.ANCHOR_GENERATOR``,
``SOLVER``, ``TEST``) are set in ``configs/Base-AInnoFace.yaml``, not here, so that this function
only *adds* keys and never changes Detectron2's own defaults.
"""

import os

import yaml
from detectron2.config import CfgNode as CN

__all__ = ["ConfigError", "add_ainnoface_config", "get_ainnoface_cfg"]


def add_ainnoface_config(cfg):
    """Add the AInnoFace keys to ``cfg`` (a Detectron2 ``CfgNode``) in place."""
    _add_model_config(cfg)
    _add_input_config(cfg)
    _add_test_config(cfg)
    _add_test_protocol_config(cfg)
    # "SGD" (Detectron2's, the paper's) or "ADAMW" (ainnoface_d2/solver.py).
    cfg.SOLVER.OPTIMIZER = "SGD"
    # Exponential moving average of the weights (ainnoface_d2/ema.py): at the end of training
    # model_final.pth holds the average. d_t = DECAY * (1 - exp(-t / RAMP_ITERS)) at step t.
    cfg.MODEL_EMA = CN()
    cfg.MODEL_EMA.ENABLED = False
    cfg.MODEL_EMA.DECAY = 0.999
    cfg.MODEL_EMA.RAMP_ITERS = 0.0


def _add_model_config(cfg):
    cfg.MODEL.AINNOFACE = CN()
    _A = cfg.MODEL.AINNOFACE
    # Number of foreground classes (1: face).
    _A.NUM_CLASSES = 1
    # Load MODEL.WEIGHTS even when it matches fewer than half of the model's tensors by name and
    # shape (ainnoface_d2/checkpoint.py); off, such weights of another network are an error.
    _A.ALLOW_PARTIAL_WEIGHTS = False
    # Second-step (FPN) features, shallowest first. The matching first-step features are the
    # backbone's "c2".."c7" (C2-C7 projected to FPN.OUT_CHANNELS by 1x1 convs).
    _A.IN_FEATURES = ["p2", "p3", "p4", "p5", "p6", "p7"]
    # Indices into IN_FEATURES of the levels with two-step classification (SRN's STC) ...
    _A.STC_LEVELS = [0, 1, 2]
    # ... and of the levels with two-step regression (SRN's STR).
    _A.STR_LEVELS = [3, 4, 5]
    # Receptive-field-enhancement block in both subnets (SRN, Sec. 3.3).
    _A.USE_RFE = True
    # Width of each of RFE's four branches (SRN: 64, so the concatenation is 256).
    _A.RFE_BRANCH_CHANNELS = 64
    # Normalisation after the subnets' 3x3 convs: "" (none, SRN) or a Detectron2 norm name such
    # as "GN" (group norm: 32 groups, or 2 channels per group below 64 channels), which makes
    # training from scratch much more stable.
    _A.HEAD_NORM = ""
    # Prior probability of a face used to initialise the classification bias (RetinaNet).
    _A.PRIOR_PROB = 0.01
    # First-step matching (STC step 1 and STR step 1): IoU >= 0.7 face, < 0.3 background.
    _A.STEP1_IOU_THRESHOLDS = [0.3, 0.7]
    _A.STEP1_IOU_LABELS = [0, -1, 1]
    # Second-step matching (and one-step levels): IoU >= 0.5 face, < 0.4 background.
    _A.STEP2_IOU_THRESHOLDS = [0.4, 0.5]
    _A.STEP2_IOU_LABELS = [0, -1, 1]
    # Anchors whose first-step background probability exceeds this are removed from the
    # second step's classification loss (training) and from the candidates (inference).
    _A.STC_NEG_THRESH = 0.99
    # Sigmoid focal loss.
    _A.FOCAL_LOSS_ALPHA = 0.25
    _A.FOCAL_LOSS_GAMMA = 2.0
    # Box regression: IoU loss (UnitBox, -ln IoU; AInnoFace) on boxes decoded with these weights.
    _A.BBOX_REG_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
    # Loss weights: second-step (or one-step) classification and regression, and the first
    # steps of STC and STR.
    _A.LOSS_WEIGHT_CLS = 1.0
    _A.LOSS_WEIGHT_BOX = 1.0
    _A.LOSS_WEIGHT_STC = 1.0
    _A.LOSS_WEIGHT_STR = 1.0
    # Max-out background label (S3FD): number of background logits on MAXOUT_LEVELS; their
    # max competes with the face logit. 0 disables it.
    _A.MAXOUT_BG = 3
    _A.MAXOUT_LEVELS = [0]
    # Extra backbone levels: C6 = 3x3 stride-2 conv on C5, C7 = 3x3 stride-2 conv on C6.
    _A.C6_CHANNELS = 1024
    _A.C7_CHANNELS = 256
    # Inference: per-level candidates above this score, at most TOPK per level, class-agnostic
    # NMS; TEST.DETECTIONS_PER_IMAGE detections are kept.
    _A.SCORE_THRESH_TEST = 0.05
    # SRN keeps 6000 per level: crowded images have more than 1000 candidates on P2 alone.
    _A.TOPK_CANDIDATES_TEST = 6000
    _A.NMS_THRESH_TEST = 0.4
    # Anchors whose best match is an ignore box (annotations marked gt_ignore by the mapper,
    # INPUT.FACE.IGNORE_REGIONS) are ignored in both steps, and so are background anchors
    # covered by an ignore box: intersection / anchor area >= IGNORE_IOF_THRESH.
    _A.IGNORE_IOF_THRESH = 0.5
    # Iterations at the start of training during which STC does not filter step 2's
    # classification loss (at initialisation the prior 0.01 equals the filter threshold, so
    # the filter would drop a random part of the anchors). -1: SOLVER.WARMUP_ITERS; 0: none.
    _A.STC_WARMUP_ITERS = -1
    # ReLU on C6 before the C7 conv and on P6 before the P7 conv (RetinaNet); SRN has none.
    _A.EXTRA_RELU = False
    # FPN top-down upsampling: "bilinear" (SRN) or "nearest" (Detectron2's FPN).
    _A.FPN_UPSAMPLE = "bilinear"
    # Initialisation of the convs around the ResNet (C6, C7, projections, FPN): "normal"
    # (N(0, 0.01), bias 0, as SRN) or "xavier" (Detectron2's c2_xavier_fill).
    _A.EXTRA_INIT = "normal"


def _add_input_config(cfg):
    # Training augmentation (SRN / PyramidBox). See ainnoface_d2/data/augmentations.py.
    cfg.INPUT.FACE = CN()
    _F = cfg.INPUT.FACE
    # Side of the square training images.
    _F.TRAIN_SIZE = 1024
    # Photometric distortion (brightness delta in pixel values, contrast/saturation factors,
    # hue delta in degrees), each applied with probability 0.5.
    _F.PHOTOMETRIC = True
    _F.BRIGHTNESS_DELTA = 32.0
    _F.CONTRAST_RANGE = (0.5, 1.5)
    _F.SATURATION_RANGE = (0.5, 1.5)
    _F.HUE_DELTA = 18.0
    # Probability of turning a training image into shades of grey (its luma in every channel),
    # after the photometric distortion; 0 (the papers' recipe) adds no step.
    _F.GRAYSCALE_PROB = 0.0
    # Random expansion onto a mean-filled canvas up to EXPAND_MAX_RATIO times the image side.
    _F.EXPAND_PROB = 0.5
    _F.EXPAND_MAX_RATIO = 4.0
    # SRN's random square crop: with probability CROP_FULL_SIDE_PROB its side is the whole
    # shorter image side, otherwise CROP_SCALE_RANGE times it (one of SRN's two square patches,
    # the shorter side or U[0.5, 1] of it).
    _F.CROP_SCALE_RANGE = (0.5, 1.0)
    _F.CROP_FULL_SIDE_PROB = 0.5
    # Probability of data-anchor-sampling (PyramidBox) instead of expand + crop.
    _F.DATA_ANCHOR_SAMPLING_PROB = 0.5
    _F.FLIP_PROB = 0.5
    # Faces smaller than this (pixels, shorter side, after resizing) are dropped from targets.
    _F.MIN_FACE_SIZE = 6.0
    # Resample a crop this many times when it loses all faces, then fall back to the whole image.
    _F.MAX_CROP_TRIES = 50
    # Data-anchor-sampling: the target size is at most this many times the face (unless a
    # bin's lower end is larger). PyramidBox's official code: 2.0; 0 = no cap (up to ~8x).
    _F.DATA_ANCHOR_SAMPLING_MAX_UPSCALE = 2.0
    # Which anchor bins data-anchor-sampling draws the target size from: "pyramidbox" (up to
    # one bin above the face's own) or "crop" (every bin that fits the training crop, target at
    # most the crop side; ainnoface_d2/data/augmentations.py, DataAnchorSampling).
    _F.DATA_ANCHOR_SAMPLING_BINS = "pyramidbox"
    # Keep annotations with iscrowd=1 (WIDER's invalid faces) and faces that end up smaller than
    # MIN_FACE_SIZE as ignore boxes (Instances.gt_ignore) instead of dropping them, so that the
    # anchors on them are not trained as background (MODEL.AINNOFACE.IGNORE_IOF_THRESH). Only
    # the AInnoFace meta-architecture reads gt_ignore: other detectors would take them as faces.
    _F.IGNORE_REGIONS = True


def _add_test_config(cfg):
    # Multi-scale + flip testing with box voting (SRN / S3FD); enabled by TEST.AUG.ENABLED.
    cfg.TEST.AUG.FACE = CN()
    _T = cfg.TEST.AUG.FACE
    # L: images are enlarged up to an area of L^2 (SRN reports L = 2100).
    _T.MAX_SIDE = 2100
    # Shrunk copy: scale and the smallest side of the boxes kept from it.
    _T.SHRINK_SCALE = 0.5
    _T.SHRINK_KEEP_MIN_SIDE = 30.0
    # Enlarged copies: scale step (1.5^t) and the largest side of the boxes kept from them.
    _T.ENLARGE_STEP = 1.5
    _T.ENLARGE_KEEP_MAX_SIDE = 100.0
    # False: no enlarged copies (only the image, its flip and the shrunk copy).
    _T.ENLARGE = True
    # Box voting: boxes overlapping at IoU >= VOTE_IOU are merged.
    _T.VOTE_IOU = 0.5
    # Voting IoU with the +1 pixel convention (areas (w + 1)(h + 1)), as SRN's bbox_vote.
    _T.VOTE_IOU_PLUS_ONE = True
    # WIDER FACE evaluator outputs (ainnoface_d2/evaluation/wider_face_evaluation.py).
    cfg.TEST.WIDER_FACE = CN()
    # Write predictions in the official submission layout under <output>/wider_face_submission.
    cfg.TEST.WIDER_FACE.WRITE_SUBMISSION = True
    # Save the easy/medium/hard precision-recall curves as a PNG.
    cfg.TEST.WIDER_FACE.PLOT_PR_CURVES = True
    # The scoring protocol (not the test-size protocols of TEST.FACE.SIZE_PROTOCOLS):
    # "matlab": the official eval_tools' exact arithmetic (int32 overlaps: a prediction takes the
    # first face it overlaps >= 0.5); "python": the popular Python port (float overlaps, best face).
    cfg.TEST.WIDER_FACE.PROTOCOL = "matlab"
    # Also run Detectron2's COCOEvaluator (pycocotools) for COCO-style AP.
    cfg.TEST.WIDER_FACE.COCO_EVAL = True


def _add_test_protocol_config(cfg):
    # Test-size protocols (ainnoface_d2/engine.py): how the images are fed to the detector at
    # evaluation. Each one listed is run and its AP labelled with its name. "original": one pass at
    # INPUT.MIN_SIZE_TEST (0: the original resolution); "vga": one pass with the image fitted
    # into 640x480; "multiscale": SRN's multi-scale + flip testing with box voting (TEST.AUG.FACE;
    # TEST.AUG.ENABLED True adds it); "pyramid": copies from the model's training scale up to
    # scale 1 (TEST.FACE.PYRAMID). Not TEST.WIDER_FACE.PROTOCOL, which picks the scoring.
    cfg.TEST.FACE = CN()
    cfg.TEST.FACE.SIZE_PROTOCOLS = ["original"]
    # The test-size protocol that FaceDetector, tools/demo.py and tools/eval_real_photos.py run
    # (one of the names above; "original" is Detectron2's single pass at INPUT.MIN_SIZE_TEST).
    cfg.TEST.FACE.PROTOCOL = "original"
    # "pyramid" (ainnoface_d2/modeling/tta.py, pyramid_copies): the image fitted into BASE_SIZE
    # (short side, long side; never enlarged), then copies STEP times larger up to scale 1; each
    # face is kept from the smallest copy in which it is at least MIN_FACE pixels (sqrt(w h)).
    cfg.TEST.FACE.PYRAMID = CN()
    cfg.TEST.FACE.PYRAMID.BASE_SIZE = (480, 640)
    cfg.TEST.FACE.PYRAMID.STEP = 2.0
    cfg.TEST.FACE.PYRAMID.MIN_FACE = 16.0
    # The largest image (pixels) FaceDetector and the demo detect on: a larger one is shrunk to
    # this area first, with a logged line, and its boxes mapped back (0: no limit). 3840 x 2160 (4K
    # UHD, 8.3 megapixels) bounds the memory of the CPU config's pyramid to about 3 GB.
    cfg.TEST.FACE.MAX_IMAGE_PIXELS = 3840 * 2160


def get_ainnoface_cfg(config_file=None, opts=None):
    """A Detectron2 config with the AInnoFace keys, ``config_file`` and ``opts`` merged in.

    Errors name the file: a missing file, or a key that neither Detectron2 nor AInnoFace defines
    (usually a typo; yacs' KeyError alone does not say which file it came from).
    """
    from detectron2.config import get_cfg

    cfg = get_cfg()
    add_ainnoface_config(cfg)
    if config_file:
        if not os.path.isfile(config_file):
            raise FileNotFoundError(f"config file not found: {config_file}")
        try:
            cfg.merge_from_file(config_file)
        except _MERGE_ERRORS as e:
            raise ConfigError(f"{config_file}: {e.args[0] if e.args else e}") from e
    if opts:
        try:
            cfg.merge_from_list(list(opts))
        except _MERGE_ERRORS as e:
            raise ConfigError(f"command-line config options {list(opts)}: {e}") from e
    return cfg


class ConfigError(ValueError, KeyError, AssertionError):
    """A config file or option that Detectron2 or AInnoFace does not accept (unknown key, value
    of another type, unreadable YAML); the message says where it came from. Also a ``KeyError``
    and an ``AssertionError``: what yacs raises for the same mistakes."""

    __str__ = BaseException.__str__


# What yacs and PyYAML raise on a bad key, value or file.
_MERGE_ERRORS = (KeyError, ValueError, AssertionError, TypeError, yaml.YAMLError)
