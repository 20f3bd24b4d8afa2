"""Evaluation: the official WIDER FACE protocol and its Detectron2 evaluator."""

from .wider_face_evaluation import (
    PROTOCOLS,
    SETTINGS,
    WiderFaceEvaluator,
    WiderImageGT,
    evaluate,
    gt_from_dataset_dicts,
    load_wider_gt_from_mat,
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
    "load_wider_gt_from_mat",
    "plot_pr_curves",
    "read_submission_dir",
    "read_submission_file",
    "voc_ap",
    "write_submission_dir",
]
