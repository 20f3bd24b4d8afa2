"""Evaluation: the official WIDER FACE protocol (:mod:`.wider_face_protocol`, numpy) and its
Detectron2 evaluator (:mod:`.wider_face_evaluation`). The ground truth is read by
:func:`ainnoface_d2.data.wider_face_format.load_eval_ground_truth`, re-exported here."""

from ..data.wider_face_format import SETTINGS, WiderImageGT, load_eval_ground_truth
from .wider_face_evaluation import WiderFaceEvaluator, gt_from_dataset_dicts
from .wider_face_protocol import (
    PROTOCOLS,
    evaluate,
    events_without_predictions,
    plot_pr_curves,
    read_submission_dir,
    read_submission_file,
    voc_ap,
    write_submission_dir,
)

__all__ = [
    "PROTOCOLS",
    "SETTINGS",
    "WiderFaceEvaluator",
    "WiderImageGT",
    "evaluate",
    "gt_from_dataset_dicts",
    "load_eval_ground_truth",
    "plot_pr_curves",
    "events_without_predictions",
    "read_submission_dir",
    "read_submission_file",
    "voc_ap",
    "write_submission_dir",
]
