"""Runtimes for the exported graph: ONNX Runtime and OpenVINO, in fp32, bf16, int8 or fp16.

Each runtime takes a padded float32 batch ``(N, 3, H, W)`` (see :func:`pad_batch`) and returns
the graph's four outputs as numpy arrays (see :mod:`ainnoface_d2.export.graph`).

Precision routes (``precision=``):

* ``"fp32"``: every backend.
* ``"bf16"``: OpenVINO with ``INFERENCE_PRECISION_HINT=bf16``; PyTorch (the ``torch`` backend of
  :class:`~ainnoface_d2.FaceDetector`) with CPU autocast and channels-last memory.
* ``"int8"``: post-training static quantization of the ONNX graph (ONNX Runtime's
  ``quantize_static``, QDQ format, per-channel weights, the convolutions only), calibrated on
  training images (:func:`quantize_onnx`); run by ONNX Runtime or OpenVINO.
* ``"fp16"``: GPU only: ONNX Runtime's TensorRT execution provider (``trt_fp16_enable``) or
  PyTorch CUDA autocast.
* ``"auto"``: bf16 where the backend runs bf16 natively on this CPU
  (:func:`ainnoface_d2.runtime.cpu_bf16_native`: ``torch.cpu`` for PyTorch, OpenVINO's
  ``OPTIMIZATION_CAPABILITIES`` for OpenVINO), fp16 on a GPU, else fp32. int8 needs calibration
  images and is never picked automatically.
"""

import logging
import os
import tempfile

import numpy as np

from ..runtime import cpu_bf16_native

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "OnnxRuntimeRunner",
    "OpenVINORunner",
    "check_model_file",
    "is_quantized",
    "pad_batch",
    "quantize_onnx",
    "resolve_precision",
]

logger = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16", "int8", "fp16", "auto")
# Which precision each backend runs, on which device kind.
_ROUTES = {
    ("torch", "cpu"): ("fp32", "bf16"),
    ("torch", "cuda"): ("fp32", "fp16", "bf16"),
    ("onnxruntime", "cpu"): ("fp32", "int8"),
    ("onnxruntime", "cuda"): ("fp32", "fp16", "int8"),
    ("openvino", "cpu"): ("fp32", "bf16", "int8"),
}
_PACKAGES = {"onnxruntime": "onnxruntime", "openvino": "openvino", "onnx": "onnx"}


def _require(module):
    """Import an optional runtime, or fail naming the pip extra that installs it."""
    try:
        return __import__(module)
    except ImportError as e:
        raise ImportError(
            f"{module} is not installed: pip install {_PACKAGES.get(module, module)} "
            "(or this project's extra: pip install -e '.[deploy]')"
        ) from e


def resolve_precision(backend, precision, device="cpu"):
    """Check a (backend, precision, device) route and resolve ``"auto"``; returns the precision."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise ValueError(
            f"unknown precision {precision!r}: expected one of {', '.join(PRECISIONS)}"
        )
    kind = "cuda" if str(device).startswith("cuda") else "cpu"
    routes = _ROUTES.get((backend, kind))
    if routes is None:
        raise ValueError(f"backend {backend!r} does not run on {device!r}")
    if precision == "auto":
        if kind == "cuda":
            precision = "fp16"
        else:
            precision = "bf16" if "bf16" in routes and cpu_bf16_native(backend) else "fp32"
        logger.info("precision auto -> %s (%s on %s)", precision, backend, device)
    if precision not in routes:
        raise ValueError(
            f"precision {precision!r} is not available with backend {backend!r} on {kind}: "
            f"it runs {', '.join(routes)}"
        )
    return precision


def pad_batch(images, pixel_mean):
    """Stack ``CxHxW`` float32 arrays of different sizes into one ``(N, 3, Hmax, Wmax)`` batch.

    The padding holds the pixel mean, which the graph normalises to 0: the same batch as
    Detectron2's ``ImageList`` (zero padding after normalisation). Returns the batch and the
    (height, width) of every image.
    """
    if len(images) == 0:
        raise ValueError("expected at least one image, got an empty batch")
    sizes = []
    for i, image in enumerate(images):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"image {i}: expected a 3xHxW array, got shape {image.shape}")
        sizes.append(image.shape[1:])
    h = max(s[0] for s in sizes)
    w = max(s[1] for s in sizes)
    mean = np.asarray(pixel_mean, dtype=np.float32).reshape(1, 3, 1, 1)
    batch = np.broadcast_to(mean, (len(images), 3, h, w)).copy()
    for i, image in enumerate(images):
        batch[i, :, : image.shape[1], : image.shape[2]] = image
    return batch, sizes


def _check_input(batch):
    if batch.ndim != 4 or batch.shape[1] != 3:
        raise ValueError(f"expected a (N, 3, H, W) batch, got shape {batch.shape}")
    if batch.shape[0] == 0:
        raise ValueError("expected at least one image, got an empty batch")


def check_model_file(path):
    """Fail with the path when a model file is missing."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file not found: {path}")


class OnnxRuntimeRunner:
    """The ONNX graph in an ONNX Runtime session (CPU, CUDA or TensorRT execution provider)."""

    def __init__(self, path, precision="fp32", device="cpu", num_threads=None):
        check_model_file(path)
        ort = _require("onnxruntime")
        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
        providers = ["CPUExecutionProvider"]
        if str(device).startswith("cuda"):
            trt = {"trt_fp16_enable": precision == "fp16", "trt_int8_enable": precision == "int8"}
            providers = [("TensorrtExecutionProvider", trt), "CUDAExecutionProvider"] + providers
            available = ort.get_available_providers()
            providers = [p for p in providers if (p[0] if isinstance(p, tuple) else p) in available]
            if precision != "fp32" and "TensorrtExecutionProvider" not in available:
                logger.warning(
                    "%s on the GPU needs ONNX Runtime's TensorRT execution provider, which this "
                    "onnxruntime lacks (it has %s): running fp32",
                    precision,
                    ", ".join(available),
                )
        self.session = ort.InferenceSession(path, options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.input_type = self.session.get_inputs()[0].type

    def __call__(self, batch):
        _check_input(batch)
        if self.input_type == "tensor(uint8)":
            batch = np.clip(np.rint(batch), 0, 255).astype(np.uint8)
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch)})


class OpenVINORunner:
    """The ONNX graph compiled by OpenVINO for the CPU, in f32 or bf16 (int8: a QDQ graph)."""

    def __init__(self, path, precision="fp32", device="cpu", num_threads=None):
        check_model_file(path)
        ov = _require("openvino")
        config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
        if num_threads:
            config["INFERENCE_NUM_THREADS"] = int(num_threads)
        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(path), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.input_type = self.compiled.inputs[0].get_element_type().get_type_name()

    def __call__(self, batch):
        _check_input(batch)
        if self.input_type == "u8":
            batch = np.clip(np.rint(batch), 0, 255).astype(np.uint8)
        result = self.request.infer({0: np.ascontiguousarray(batch)})
        return [np.asarray(result[out]) for out in self.compiled.outputs]


def is_quantized(path):
    """Whether an ONNX file already holds a quantized (QDQ) graph."""
    onnx = _require("onnx")
    graph = onnx.load(path, load_external_data=False).graph
    return any(node.op_type == "QuantizeLinear" for node in graph.node)


class _Calibration:
    """ONNX Runtime's ``CalibrationDataReader`` protocol over a list of batches."""

    def __init__(self, input_name, batches):
        self.input_name = input_name
        self.batches = iter(batches)

    def get_next(self):
        batch = next(self.batches, None)
        return None if batch is None else {self.input_name: batch}


def quantize_onnx(fp32_path, int8_path, calibration_batches):
    """Post-training static int8 quantization of an exported graph (QDQ, per-channel symmetric
    int8 weights, asymmetric uint8 activations, the convolutions only; decoding and NMS stay
    fp32). uint8 activations with int8 weights ("U8S8") are what ONNX Runtime's x86 int8
    kernels run natively (VNNI); with int8 activations it ran slower than fp32 (BENCHMARKS.md).

    Args:
        calibration_batches: ``(1, 3, H, W)`` float32 arrays (training images, preprocessed as
            at inference); min/max of every convolution's input are taken over them.
    """
    check_model_file(fp32_path)
    _require("onnxruntime")
    from onnxruntime import quantization as q

    batches = [np.ascontiguousarray(b, dtype=np.float32) for b in calibration_batches]
    if not batches:
        raise ValueError("int8 calibration needs at least one image")
    # ONNX Runtime's pre-processing (shape inference, constant folding, graph optimisation)
    # first, as its quantization guide asks: without it the R50 int8 graph ran slower than fp32
    # under ONNX Runtime (BENCHMARKS.md).
    with tempfile.TemporaryDirectory() as tmp:
        prepared = os.path.join(tmp, "prepared.onnx")
        q.quant_pre_process(fp32_path, prepared, skip_symbolic_shape=True)
        q.quantize_static(
            prepared,
            int8_path,
            _Calibration("images", batches),
            quant_format=q.QuantFormat.QDQ,
            per_channel=True,
            activation_type=q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8,
            op_types_to_quantize=["Conv"],
            calibrate_method=q.CalibrationMethod.MinMax,
        )
    return int8_path
