"""What :class:`ainnoface_d2.FaceDetector` needs to run an exported graph: the runner of a
backend and precision (exporting the model and quantizing it first where needed) and the int8
calibration images."""

import os
import tempfile

import numpy as np
from detectron2.data import DatasetCatalog
from detectron2.data.detection_utils import read_image

from . import runtimes
from .graph import export_onnx

__all__ = ["build_runner", "calibration_images"]

_RUNNERS = {"onnxruntime": runtimes.OnnxRuntimeRunner, "openvino": runtimes.OpenVINORunner}


def build_runner(backend, precision, device, model=None, onnx_file=None, calibration_batches=None):
    """The runner of ``backend`` in ``precision`` on ``device``, for ``onnx_file`` or, without
    it, for ``model`` exported now (to a temporary file). An int8 run of a graph that is not
    quantized yet quantizes it on ``calibration_batches()`` (a callable: the images are read only
    when they are needed)."""
    runner_class = _RUNNERS[backend]
    with tempfile.TemporaryDirectory(prefix="ainnoface_export_") as tmp:
        path = onnx_file
        if path is None:
            path = export_onnx(model, os.path.join(tmp, "model.onnx"))
        else:
            runtimes.check_model_file(path)
        if precision == "int8" and not runtimes.is_quantized(path):
            int8_path = os.path.join(tmp, "model_int8.onnx")
            path = runtimes.quantize_onnx(path, int8_path, calibration_batches())
        return runner_class(path, precision, device)


def calibration_images(cfg, calibration=None, count=64):
    """int8 calibration images (BGR arrays): ``calibration`` itself when it is a list, else
    ``count`` images spread evenly over the dataset it names (default: ``DATASETS.TRAIN[0]``),
    so that every kind of image in it is seen (a dataset's first images are often one event:
    on the quickstart model, its first 16 moved the int8 val AP by +4.2 / +1.7 / +1.0,
    64 spread over the split by -0.3 / -0.2 / -0.3)."""
    if calibration is not None and not isinstance(calibration, str):
        return list(calibration)
    name = calibration or (cfg.DATASETS.TRAIN[0] if cfg.DATASETS.TRAIN else "")
    if name not in DatasetCatalog:
        raise ValueError(
            f"int8 calibration: dataset {name!r} is not registered; pass calibration="
            "a list of images or a registered dataset name"
        )
    dicts = DatasetCatalog.get(name)
    picks = np.unique(np.linspace(0, len(dicts) - 1, min(count, len(dicts))).round())
    return [read_image(dicts[int(i)]["file_name"], format="BGR") for i in picks]
