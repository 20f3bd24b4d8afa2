#!/usr/bin/env python
"""Train and evaluate AInnoFace with Detectron2's DefaultTrainer.

    python tools/train_net.py --config-file configs/ainnoface_R152.yaml --num-gpus 8
    python tools/train_net.py --config-file configs/ainnoface_R152.yaml --eval-only \
        MODEL.WEIGHTS output/ainnoface_R152/model_final.pth [TEST.AUG.ENABLED True]

Everything is stock Detectron2 (DefaultTrainer, checkpointer, hooks, launch) except the data
mapper (the paper's augmentation), the evaluator (official WIDER FACE protocol) and multi-scale
testing, which come from ainnoface_d2.
"""

import logging
import os
import sys
from collections import OrderedDict

import ainnoface_d2  # noqa: F401  (compat shims + registration; must precede detectron2 imports)
from ainnoface_d2 import get_ainnoface_cfg
from ainnoface_d2.data import FaceDatasetMapper
from ainnoface_d2.evaluation import WiderFaceEvaluator
from ainnoface_d2.modeling.tta import AInnoFaceWithTTA
from ainnoface_d2.solver import build_optimizer

import detectron2.utils.comm as comm
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import (
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
)
from detectron2.engine import DefaultTrainer, default_argument_parser, default_setup, launch
from detectron2.evaluation import COCOEvaluator, DatasetEvaluators, verify_results
from detectron2.utils.logger import setup_logger

logger = logging.getLogger("ainnoface_d2")


class Trainer(DefaultTrainer):
    """DefaultTrainer with AInnoFace's data mapper, evaluators and test-time augmentation."""

    # Detectron2 v0.6's DefaultTrainer does not checkpoint its inner SimpleTrainer/AMPTrainer, so
    # a resumed run would restart SGD momentum (and the AMP grad scaler) from zero; Detectron2
    # main does. Add the inner state only where the parent class lacks it.
    _PARENT_SAVES_INNER_TRAINER = "state_dict" in DefaultTrainer.__dict__

    def state_dict(self):
        ret = super().state_dict()
        if not self._PARENT_SAVES_INNER_TRAINER:
            ret["_trainer"] = self._trainer.state_dict()
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        if not self._PARENT_SAVES_INNER_TRAINER and "_trainer" in state_dict:
            self._trainer.load_state_dict(state_dict["_trainer"])

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type", None)
        evaluators = []
        if evaluator_type == "wider_face":
            evaluators.append(
                WiderFaceEvaluator(
                    dataset_name,
                    output_dir=output_folder,
                    write_submission=cfg.TEST.WIDER_FACE.WRITE_SUBMISSION,
                    plot_pr_curves=cfg.TEST.WIDER_FACE.PLOT_PR_CURVES,
                    protocol=cfg.TEST.WIDER_FACE.PROTOCOL,
                )
            )
        if evaluator_type == "coco" or (
            evaluator_type == "wider_face" and cfg.TEST.WIDER_FACE.COCO_EVAL
        ):
            # The fast C++ COCOeval needs detectron2._C; pycocotools' COCOeval gives the same APs.
            evaluators.append(
                COCOEvaluator(
                    dataset_name, tasks=("bbox",), output_dir=output_folder, use_fast_impl=False
                )
            )
        if not evaluators:
            raise NotImplementedError(
                f"no evaluator for dataset {dataset_name!r} with evaluator_type {evaluator_type!r}"
            )
        return evaluators[0] if len(evaluators) == 1 else DatasetEvaluators(evaluators)

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)

    @classmethod
    def build_train_loader(cls, cfg):
        return build_detection_train_loader(cfg, mapper=FaceDatasetMapper(cfg, is_train=True))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_detection_test_loader(
            cfg, dataset_name, mapper=FaceDatasetMapper(cfg, is_train=False)
        )

    @classmethod
    def test_with_TTA(cls, cfg, model):
        logger.info("Running inference with test-time augmentation ...")
        model = AInnoFaceWithTTA(cfg, model)
        evaluators = [
            cls.build_evaluator(
                cfg, name, output_folder=os.path.join(cfg.OUTPUT_DIR, "inference_TTA", name)
            )
            for name in cfg.DATASETS.TEST
        ]
        res = cls.test(cfg, model, evaluators)
        return OrderedDict({k + "_TTA": v for k, v in res.items()})


def setup(args):
    """Config from file + command line, then Detectron2's standard setup (logging, output dir)."""
    cfg = get_ainnoface_cfg(args.config_file, args.opts)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
        print(f"{args.config_file}: MODEL.DEVICE is cuda but no GPU is available; using cpu")
    cfg.freeze()
    default_setup(cfg, args)
    setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="ainnoface_d2")
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        res = Trainer.test(cfg, model)
        if cfg.TEST.AUG.ENABLED:
            res.update(Trainer.test_with_TTA(cfg, model))
        if comm.is_main_process():
            verify_results(cfg, res)
        return res

    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    if cfg.TEST.AUG.ENABLED:
        from detectron2.engine import hooks

        trainer.register_hooks(
            [hooks.EvalHook(0, lambda: trainer.test_with_TTA(cfg, trainer.model))]
        )
    return trainer.train()


def invoke_main(argv=None):
    args = default_argument_parser().parse_args(argv)
    if not args.config_file:
        sys.exit("--config-file is required, e.g. --config-file configs/ainnoface_R18_cpu.yaml")
    print("Command Line Args:", args)
    return launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


if __name__ == "__main__":
    invoke_main()
