"""Runtimes for the exported graph: ONNX Runtime and OpenVINO, in fp32, bf16, int8 or fp16.

Each runtime takes a padded batch ``(N, 3, H, W)`` (see :func:`pad_batch`; uint8, uint16 by its
high byte, or float pixel values in [0, 255]: :mod:`ainnoface_d2.data.image_io`) and returns the
graph's four outputs as numpy arrays (see :mod:`ainnoface_d2.export.graph`), with each image's
boxes clipped to its own size when the sizes are given.

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

import json
import logging
import os
import tempfile

import numpy as np

from ..data import image_io
from ..file_io import atomic_path, atomic_write
from ..runtime import cpu_bf16_native
from .graph import metadata_path

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "OnnxRuntimeRunner",
    "OpenVINORunner",
    "check_model_file",
    "clip_to_sizes",
    "is_quantized",
    "pad_batch",
    "padded_size_groups",
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
    """Stack ``CxHxW`` pixel arrays of different sizes into one ``(N, 3, Hmax, Wmax)`` float32
    batch.

    The padding holds the pixel mean, which the graph normalises to 0: the same batch as
    Detectron2's ``ImageList`` (zero padding after normalisation). Images take the dtypes of
    :func:`ainnoface_d2.data.image_io.as_pixel_batch` (uint8, uint16 by its high byte, float
    pixel values in [0, 255]). Returns the batch and the (height, width) of every image, which
    the runners take to clip each image's boxes to its own area.

    Images whose padded sizes differ (:func:`padded_size_groups`) do not get exactly the
    detections they get alone: the larger canvas changes what the network sees near the borders
    and, with group norm, everywhere.
    """
    if len(images) == 0:
        raise ValueError("expected at least one image, got an empty batch")
    sizes = []
    for i, image in enumerate(images):
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"image {i}: expected a 3xHxW array, got shape {image.shape}")
        sizes.append(image.shape[1:])
    h = max(s[0] for s in sizes)
    w = max(s[1] for s in sizes)
    mean = np.asarray(pixel_mean, dtype=np.float32).reshape(1, 3, 1, 1)
    batch = np.broadcast_to(mean, (len(images), 3, h, w)).copy()
    for i, image in enumerate(images):
        pixels = image_io.as_pixel_batch(np.asarray(image)[None], f"image {i}")[0]
        batch[i, :, : image.shape[1], : image.shape[2]] = pixels
    return batch, sizes


def padded_size_groups(sizes, divisibility=1):
    """Indices of ``sizes`` ((height, width) pairs) grouped by their size padded up to a
    multiple of ``divisibility``, in order of first appearance: the images that can share one
    forward pass and still get exactly the detections they get alone."""
    d = max(int(divisibility or 1), 1)
    groups = {}
    for i, (h, w) in enumerate(sizes):
        groups.setdefault((-(-int(h) // d) * d, -(-int(w) // d) * d), []).append(i)
    return list(groups.values())


def clip_to_sizes(outputs, sizes):
    """The graph's four outputs with each image's boxes clipped to its own (height, width) and
    those left empty dropped (``num_detections`` lowered, the rest moved to the front): in a
    padded batch the graph can only clip to the batch's size."""
    num, boxes, scores, classes = (np.array(o) for o in outputs[:4])
    if len(sizes) != len(num):
        raise ValueError(f"{len(sizes)} image sizes for a batch of {len(num)} images")
    for i, (h, w) in enumerate(sizes):
        n = int(num[i])
        b = boxes[i, :n]
        b[:, 0::2] = b[:, 0::2].clip(0, w)
        b[:, 1::2] = b[:, 1::2].clip(0, h)
        keep = np.flatnonzero((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1]))
        for array in (boxes, scores, classes):
            kept = array[i, keep].copy()
            array[i, :n] = 0
            array[i, : len(keep)] = kept
        num[i] = len(keep)
    return [num, boxes, scores, classes, *outputs[4:]]


def _check_input(batch):
    return image_io.as_pixel_batch(batch)


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

    def __call__(self, batch, sizes=None):
        """The graph's outputs for a ``(N, 3, H, W)`` batch (:func:`pad_batch`); with ``sizes``
        (each image's height and width) the boxes are clipped to them (:func:`clip_to_sizes`)."""
        batch = _check_input(batch)
        if self.input_type == "tensor(uint8)":
            batch = np.clip(np.rint(batch), 0, 255).astype(np.uint8)
        else:
            batch = batch.astype(np.float32, copy=False)
        outputs = self.session.run(None, {self.input_name: np.ascontiguousarray(batch)})
        return outputs if sizes is None else clip_to_sizes(outputs, sizes)


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

    def __call__(self, batch, sizes=None):
        """As :meth:`OnnxRuntimeRunner.__call__`."""
        batch = _check_input(batch)
        if self.input_type == "u8":
            batch = np.clip(np.rint(batch), 0, 255).astype(np.uint8)
        else:
            batch = batch.astype(np.float32, copy=False)
        result = self.request.infer({0: np.ascontiguousarray(batch)})
        outputs = [np.asarray(result[out]) for out in self.compiled.outputs]
        return outputs if sizes is None else clip_to_sizes(outputs, sizes)


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


# What quantize_onnx does, as its graph's metadata file states it.
INT8_SCHEME = (
    "static QDQ: per-channel symmetric int8 weights, uint8 activations (min/max calibration), "
    "convolutions only; decoding and NMS in fp32"
)


def quantize_onnx(fp32_path, int8_path, calibration_batches):
    """Post-training static int8 quantization of an exported graph (QDQ, per-channel symmetric
    int8 weights, asymmetric uint8 activations, the convolutions only; decoding and NMS stay
    fp32). uint8 activations with int8 weights ("U8S8") are what ONNX Runtime's x86 int8
    kernels run natively (VNNI); with int8 activations it ran slower than fp32 (BENCHMARKS.md).

    The int8 graph gets its own metadata file (``<int8 graph>.json``: the fp32 graph's, with its
    own file name, the scheme and the number of calibration images) when the fp32 graph has one;
    both replace their previous versions only when both are complete.

    Args:
        calibration_batches: ``(1, 3, H, W)`` float32 arrays (training images, preprocessed as
            at inference); min/max of every convolution's input are taken over them.
    """
    check_model_file(fp32_path)
    _require("onnxruntime")
    batches = [np.ascontiguousarray(b, dtype=np.float32) for b in calibration_batches]
    if not batches:
        raise ValueError("int8 calibration needs at least one image")
    fp32_meta = metadata_path(fp32_path)
    if not os.path.isfile(fp32_meta):
        with atomic_path(int8_path) as tmp:
            _quantize_static(fp32_path, tmp, batches)
        return int8_path
    with open(fp32_meta, encoding="utf-8") as f:
        meta = json.load(f)
    meta.update(file=os.path.basename(int8_path), quantization=INT8_SCHEME)
    meta["calibration_images"] = len(batches)
    with atomic_write(metadata_path(int8_path)) as f, atomic_path(int8_path) as tmp:
        f.write(json.dumps(meta, indent=2) + "\n")
        _quantize_static(fp32_path, tmp, batches)
    return int8_path


def _quantize_static(fp32_path, int8_path, batches):
    from onnxruntime import quantization as q

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
