"""``Trainer``: Detectron2's ``DefaultTrainer`` with AInnoFace's data mapper, optimizer, evaluators
and the labelled test-size protocols; ``setup`` and the weights check of ``tools/train_net.py``.

The test-size protocols (names, sizes, output folders, wrapping) are those of
:mod:`ainnoface_d2.size_protocol`; :meth:`Trainer.test` runs each of ``TEST.FACE.SIZE_PROTOCOLS``
on every ``DATASETS.TEST`` split and labels its AP with the protocol's name.
"""

import logging
import os
import re
import time
import warnings
from collections import OrderedDict

import detectron2.utils.comm as comm
import torch
from detectron2.data import (
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
)
from detectron2.engine import DefaultTrainer, SimpleTrainer, default_setup, hooks
from detectron2.evaluation import (
    COCOEvaluator,
    DatasetEvaluators,
    inference_on_dataset,
    print_csv_format,
)
from detectron2.utils.logger import setup_logger

from . import compat
from .checkpoint import (
    AInnoFaceCheckpointer,
    build_checkpointer,
    check_resumable,
    checkpoint_differences,
)
from .config import get_ainnoface_cfg
from .data import FaceDatasetMapper
from .ema import EMAHook
from .evaluation import WiderFaceEvaluator
from .runtime import cpu_bf16_native
from .size_protocol import (
    SIZE_PROTOCOLS,
    output_folder,
    result_suffix,
    size_protocol_mapper,
    size_protocols,
    wrap_model,
)
from .solver import build_optimizer

__all__ = [
    "SIZE_PROTOCOLS",
    "Trainer",
    "check_resumable",
    "check_weights",
    "checkpoint_differences",
    "setup",
    "size_protocols",
    "size_protocol_mapper",
]

logger = logging.getLogger(__name__)

# DefaultTrainer wraps the model with create_ddp_model, which needs this for CPU models.
compat.allow_cpu_ddp()
compat.mend_lr_scheduler_hook()


def _retyped(trainer: SimpleTrainer, cls: type) -> SimpleTrainer:
    """The same training state (model, optimizer, the running data iterator, hooks) as an
    instance of ``cls``, without starting the data loader again (AMPTrainer's grad scaler,
    which a CPU run does not use, is left behind)."""
    new = cls.__new__(cls)
    new.__dict__.update({k: v for k, v in trainer.__dict__.items() if k != "grad_scaler"})
    return new


class CPUAutocastTrainer(SimpleTrainer):
    """Detectron2's SimpleTrainer with the forward pass under ``torch.autocast("cpu",
    torch.bfloat16)``: what ``SOLVER.AMP.ENABLED`` means when ``MODEL.DEVICE`` is "cpu"
    (Detectron2's AMPTrainer is CUDA fp16 only). bf16 keeps fp32's exponent range, so there is
    no loss scaling; the losses themselves are computed in fp32 (``AInnoFace.forward_training``).
    """

    def run_step(self):
        assert self.model.training, "[CPUAutocastTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss_dict = self.model(data)
        loss_dict = {k: v.float() for k, v in loss_dict.items()}
        losses = sum(loss_dict.values())
        self.optimizer.zero_grad()
        losses.backward()
        self._write_metrics(loss_dict, data_time)
        self.optimizer.step()


class Trainer(DefaultTrainer):
    """DefaultTrainer with AInnoFace's data mapper, evaluators and test-size protocols; with
    ``SOLVER.AMP.ENABLED`` on a CPU it trains in bf16 autocast (:class:`CPUAutocastTrainer`)."""

    def __init__(self, cfg):
        cpu_amp = cfg.SOLVER.AMP.ENABLED and torch.device(cfg.MODEL.DEVICE).type == "cpu"
        with warnings.catch_warnings():
            if cpu_amp:  # the CUDA GradScaler that DefaultTrainer makes is replaced below
                warnings.filterwarnings("ignore", message=".*GradScaler.*")
            super().__init__(cfg)
        if cpu_amp:
            native = cpu_bf16_native()
            if not native:
                logger.warning(
                    "SOLVER.AMP.ENABLED on a CPU without native bf16 (AVX-512-BF16 or AMX, as "
                    "torch.cpu reports it): training in fp32, which is faster there."
                )
            cls = CPUAutocastTrainer if native else SimpleTrainer
            self._trainer = _retyped(self._trainer, cls)

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

    def build_hooks(self):
        """Detectron2's hooks, with :class:`ainnoface_d2.ema.EMAHook` (``MODEL_EMA.ENABLED``)
        after the LR scheduler: before the checkpointer, so that the last checkpoint holds the
        average. Checkpoints are read and written by
        :class:`ainnoface_d2.checkpoint.AInnoFaceCheckpointer`."""
        allow = self.cfg.MODEL.AINNOFACE.ALLOW_PARTIAL_WEIGHTS
        self.checkpointer = AInnoFaceCheckpointer.like(self.checkpointer, allow_partial=allow)
        ret = super().build_hooks()
        if self.cfg.MODEL_EMA.ENABLED:
            at = next(i for i, h in enumerate(ret) if isinstance(h, hooks.LRScheduler)) + 1
            ret.insert(at, EMAHook.from_config(self.cfg))
        return ret

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None, size_protocol="original"):
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
                    size_protocol=size_protocol,
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
    def build_model(cls, cfg):
        """Detectron2's model; on a CPU in channels-last memory format, whose oneDNN convolutions
        (forward and backward, fp32 and bf16) are faster: ~15 % of the model's compute, ~8 % of
        a whole training step with its data loading (BENCHMARKS.md, "Training step"). Parameters
        keep their shapes and values, so checkpoints are the same either way."""
        model = super().build_model(cfg)
        if torch.device(cfg.MODEL.DEVICE).type == "cpu":
            model.to(memory_format=torch.channels_last)
        return model

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)

    @classmethod
    def build_train_loader(cls, cfg):
        return build_detection_train_loader(cfg, mapper=FaceDatasetMapper(cfg, is_train=True))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name, size_protocol="original"):
        return build_detection_test_loader(
            cfg, dataset_name, mapper=size_protocol_mapper(cfg, size_protocol)
        )

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """Without ``evaluators``: every test-size protocol of :func:`size_protocols` on every
        test dataset, results keyed ``<dataset>``, ``<dataset>_vga``, ``<dataset>_TTA`` (flat, as
        Detectron2 returns them, when that is a single entry)."""
        if evaluators is not None:
            return super().test(cfg, model, evaluators)
        results = OrderedDict()
        for protocol in size_protocols(cfg):
            results.update(cls.test_size_protocol(cfg, model, protocol))
        if len(results) == 1:
            return next(iter(results.values()))
        return results

    @classmethod
    def test_size_protocol(cls, cfg, model, protocol):
        """One test-size protocol on every test dataset: ``{<dataset><suffix>: results}``."""
        folder, suffix = output_folder(protocol), result_suffix(protocol)
        if protocol == "multiscale":
            logger.info("Running inference with test-time augmentation ...")
        model = wrap_model(cfg, model, protocol)
        results = OrderedDict()
        for name in cfg.DATASETS.TEST:
            loader = cls.build_test_loader(cfg, name, size_protocol=protocol)
            output = os.path.join(cfg.OUTPUT_DIR, folder, name)
            evaluator = cls.build_evaluator(cfg, name, output, size_protocol=protocol)
            logger.info("Evaluating %s with the '%s' test-size protocol", name, protocol)
            results[name + suffix] = inference_on_dataset(model, loader, evaluator)
            if comm.is_main_process():
                logger.info("Results of %s ('%s' test size):", name, protocol)
                print_csv_format(results[name + suffix])
        return results

    @classmethod
    def test_with_TTA(cls, cfg, model):
        """The ``multiscale`` protocol alone (Detectron2's name for it)."""
        return cls.test_size_protocol(cfg, model, "multiscale")


_TORCHVISION_PKL = re.compile(r"R-(\d+)-torchvision\.pkl$")


def check_weights(cfg, resume=False):
    """Raise ``FileNotFoundError`` saying what to do when ``MODEL.WEIGHTS`` names a local file that
    does not exist and will be loaded (not when ``resume`` finds a checkpoint in ``OUTPUT_DIR``)."""
    weights = cfg.MODEL.WEIGHTS
    if not weights or "://" in weights or os.path.isfile(weights):
        return
    if resume and os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint")):
        return
    match = _TORCHVISION_PKL.search(os.path.basename(weights))
    if match:
        folder = os.path.dirname(weights) or "."
        hint = (
            "It is the ImageNet backbone converted from torchvision; make it once with "
            f"(needs a network connection):\n  mkdir -p {folder} && python "
            f"tools/convert_torchvision_to_d2.py --download resnet{match.group(1)} {weights}"
        )
    else:
        hint = "Give a checkpoint that exists (MODEL.WEIGHTS path/to/model.pth)."
    raise FileNotFoundError(f"MODEL.WEIGHTS {weights} does not exist. {hint}")


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


def load_for_eval(cfg, resume=False):
    """The model of ``cfg`` with ``MODEL.WEIGHTS`` (or, with ``resume``, the last checkpoint, which
    must hold this model: :func:`check_resumable`)."""
    model = Trainer.build_model(cfg)
    checkpointer = build_checkpointer(cfg, model, save_dir=cfg.OUTPUT_DIR)
    checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=resume)
    return model
