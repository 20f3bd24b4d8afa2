"""``FaceDetector``: run a trained AInnoFace (or any Detectron2 detector) on numpy images.

A small Python API in the spirit of Detectron2's ``DefaultPredictor``
(``detectron2/engine/defaults.py``): it builds the config and the model, loads the weights and
turns an ``HxWx3`` array into ``{"boxes", "scores"}``, in batches, under one of the test-size
protocols of :mod:`ainnoface_d2.size_protocol` (``TEST.FACE.PROTOCOL``: one pass, or copies such
as SRN's multi-scale + flip testing or the pyramid,
:class:`ainnoface_d2.modeling.tta.AInnoFaceWithTTA`).

``backend`` and ``precision`` choose the runtime (see :mod:`ainnoface_d2.export.runtimes`):
``"torch"`` runs the Detectron2 model (fp32; bf16 with CPU autocast and channels-last memory;
fp16 with CUDA autocast); ``"onnxruntime"`` and ``"openvino"`` run the exported graph
(:mod:`ainnoface_d2.export.graph`), exported from the checkpoint at construction or read from an
``.onnx`` file given as ``weights``; ``"int8"`` quantizes that graph on ``calibration`` images.
The images of a batch that share one padded size run in one forward pass (padded as Detectron2's
``ImageList`` pads them), the others in passes of their own, so that each image gets the
detections it gets alone.

Example::

    import cv2
    from ainnoface_d2.predictor import FaceDetector

    detector = FaceDetector("configs/ainnoface_R50.yaml", weights="model_final.pth")
    faces = detector(cv2.imread("photo.jpg"))  # BGR, as OpenCV reads it
    for (x1, y1, x2, y2), score in zip(faces["boxes"], faces["scores"]):
        ...

AInnoFace configs set ``INPUT.MIN_SIZE_TEST: 0`` (test at the original size, as the WIDER FACE
protocol does); Detectron2's ``ResizeShortestEdge`` treats a size of 0 as "no resize", so the
image reaches the model unchanged. Any positive ``MIN_SIZE_TEST`` resizes as in
``DefaultPredictor``, and the boxes still come back in the original image's pixels.
"""

import contextlib
import logging
import os
from collections.abc import Sequence

import numpy as np
import torch
from detectron2.modeling import build_model
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, Instances

from .checkpoint import build_checkpointer
from .config import get_ainnoface_cfg
from .data import image_io
from .export import runtimes
from .export.runner import build_runner, calibration_images
from .modeling.tta import AInnoFaceWithTTA
from .size_protocol import check_size_protocol, single_pass_resize, wrap_model

__all__ = ["FaceDetector"]

logger = logging.getLogger(__name__)


class FaceDetector:
    """Detect faces in numpy images with a Detectron2 model built from a config file.

    Args:
        config_file: a YAML config (AInnoFace or any Detectron2 detector config).
        weights: checkpoint to load (``.pth``/``.pkl``, a URL or ``detectron2://`` path). None uses
            the config's ``MODEL.WEIGHTS`` (after ``opts``); ``""`` loads nothing.
        device: "cpu", "cuda", "cuda:1", ...; None keeps the config's ``MODEL.DEVICE`` (after
            ``opts``), falling back to cpu when that is cuda and no GPU is available.
        confidence_threshold: detections scoring below this are dropped.
        opts: extra ``KEY VALUE`` config overrides, as on Detectron2 command lines.
        tta: wrap the model in SRN's multi-scale + flip testing (``TEST.AUG.FACE.*``), the
            ``"multiscale"`` protocol.
        backend: "torch", "onnxruntime" or "openvino" (the last two: ``pip install
            -e '.[deploy]'``).
        precision: "fp32", "bf16", "int8", "fp16" (GPU) or "auto" (see
            :func:`ainnoface_d2.export.runtimes.resolve_precision`).
        calibration: int8 only: ``HxWx3`` BGR images to calibrate on, or a registered dataset
            name (64 of its images, spread evenly); None: the config's first
            ``DATASETS.TRAIN`` set.
        min_face, max_face: the smallest / largest face (pixels, sqrt(w h)) to find; beyond the
            anchors' sizes the image also runs enlarged / shrunk (and each copy flipped), see
            :func:`ainnoface_d2.modeling.tta.face_range_copies`. Not together with ``tta`` or
            ``protocol``.
        protocol: the test-size protocol (:mod:`ainnoface_d2.engine`): ``"original"`` (one pass
            at ``INPUT.MIN_SIZE_TEST``), ``"vga"`` (one pass, image fitted into 640x480),
            ``"multiscale"`` (SRN's copies, as ``tta=True``) or ``"pyramid"`` (copies from the
            training scale up, ``TEST.FACE.PYRAMID``). None: the config's
            ``TEST.FACE.PROTOCOL`` (``"multiscale"`` with ``tta=True``). Every protocol runs on
            every backend.

    Attributes:
        cfg: the frozen config; ``protocol``: the test-size protocol run (``"range"`` with
            ``min_face``/``max_face``); ``model``: what runs on each batch: the model in eval
            mode, or the exported graph behind the same interface (non-torch backends), wrapped
            in :class:`ainnoface_d2.modeling.tta.AInnoFaceWithTTA` for the protocols with
            copies; ``network``: the unwrapped Detectron2 model (None when the backend runs a
            given ``.onnx`` file); ``runner``: the exported graph's runtime (None for the torch
            backend); ``precision``: the resolved precision.
    """

    def __init__(
        self,
        config_file: str,
        weights: str | None = None,
        device: str | None = None,
        confidence_threshold: float = 0.5,
        opts: Sequence[str] | None = None,
        tta: bool = False,
        backend: str = "torch",
        precision: str = "fp32",
        calibration=None,
        min_face: float | None = None,
        max_face: float | None = None,
        protocol: str | None = None,
    ):
        if not isinstance(config_file, (str, os.PathLike)):
            raise TypeError(
                "FaceDetector: config_file must be the path of a config file (e.g. "
                f"configs/ainnoface_R18_cpu.yaml), got {type(config_file).__name__}"
            )
        cfg = get_ainnoface_cfg(config_file, list(opts or []))
        self.protocol = self._resolve_protocol(cfg, tta, protocol, min_face, max_face)
        if weights is not None:
            cfg.MODEL.WEIGHTS = weights
        if device is None:
            device = cfg.MODEL.DEVICE
            if device.startswith("cuda") and not torch.cuda.is_available():
                logger.info(
                    "%s asks for %s but no GPU is available; using cpu.", config_file, device
                )
                device = "cpu"
        cfg.MODEL.DEVICE = device
        cfg.freeze()
        self.cfg = cfg
        self.confidence_threshold = float(confidence_threshold)
        self.backend = backend
        self.precision = runtimes.resolve_precision(backend, precision, device)
        self.input_format = cfg.INPUT.FORMAT
        if self.input_format not in ("RGB", "BGR"):
            raise ValueError(
                f"{config_file}: INPUT.FORMAT must be RGB or BGR, got {self.input_format}"
            )
        # The protocols with copies resize in the wrapper; the single passes resize here.
        self.aug = single_pass_resize(cfg, self.protocol)

        onnx_file = cfg.MODEL.WEIGHTS if cfg.MODEL.WEIGHTS.endswith(".onnx") else None
        if onnx_file and backend == "torch":
            raise ValueError(f"{onnx_file}: an exported graph runs on onnxruntime or openvino")
        self.network = None
        if not (onnx_file and backend != "torch"):
            self.network = self._build_model(cfg, config_file)
        self.runner = None
        if backend != "torch":
            self.runner = self._build_runner(onnx_file, calibration)
            model = _GraphModel(self.runner, cfg.MODEL.PIXEL_MEAN)
        else:
            model = self.network
            if self.precision != "fp32" and device == "cpu":
                model.to(memory_format=torch.channels_last)
        if self.protocol == "range":
            model = AInnoFaceWithTTA(cfg, model, face_range=(min_face, max_face))
        else:
            model = wrap_model(cfg, model, self.protocol)
        self.model = model

    @staticmethod
    def _resolve_protocol(cfg, tta, protocol, min_face, max_face) -> str:
        if min_face is not None or max_face is not None:
            if tta or protocol is not None:
                raise ValueError(
                    "tta/protocol and min_face/max_face both choose the test scales; pass one"
                )
            return "range"
        if tta:
            if protocol not in (None, "multiscale"):
                raise ValueError(f"tta=True is the 'multiscale' protocol, not {protocol!r}")
            return "multiscale"
        protocol = cfg.TEST.FACE.PROTOCOL if protocol is None else protocol
        return check_size_protocol(protocol, "TEST.FACE.PROTOCOL or protocol=")

    @staticmethod
    def _build_model(cfg, config_file):
        model = build_model(cfg)
        if cfg.MODEL.WEIGHTS:
            build_checkpointer(cfg, model).load(cfg.MODEL.WEIGHTS)
        else:
            logger.warning(
                "No weights given (MODEL.WEIGHTS is empty): %s detects with random weights.",
                config_file,
            )
        return model.eval()

    def _build_runner(self, onnx_file, calibration):
        """The exported graph (given, or exported now) in the chosen runtime and precision."""

        def calibration_batches():
            return [self.to_batch([im])[0] for im in self.calibration_images(calibration)]

        return build_runner(
            self.backend,
            self.precision,
            self.cfg.MODEL.DEVICE,
            model=self.network,
            onnx_file=onnx_file,
            calibration_batches=calibration_batches,
        )

    def calibration_images(self, calibration=None, count=64):
        """int8 calibration images (BGR arrays): see
        :func:`ainnoface_d2.export.runner.calibration_images`."""
        return calibration_images(self.cfg, calibration, count)

    def __call__(self, image: np.ndarray, format: str = "BGR") -> dict:
        """Faces in one image.

        Args:
            image: ``HxWx3`` uint8 array (``HxW`` grayscale is accepted too; uint16 becomes
                8-bit by its high byte; other types are refused:
                :mod:`ainnoface_d2.data.image_io`). Above ``TEST.FACE.MAX_IMAGE_PIXELS`` it is
                detected on a shrunk copy (a logged line); the boxes are in its own pixels.
            format: channel order of ``image``: "BGR" (OpenCV) or "RGB" (PIL, matplotlib).

        Returns:
            dict with ``boxes`` (N x 4 float32 XYXY, original image pixels) and ``scores`` (N
            float32), sorted by decreasing score, scores >= ``confidence_threshold``.
        """
        return _as_dict(self._predict([image], format)[0])

    def predict_instances(self, image: np.ndarray, format: str = "BGR") -> Instances:
        """Like ``__call__`` but returns the thresholded, sorted ``Instances`` on the CPU."""
        return self._predict([image], format)[0]

    def detect_many(
        self, images: Sequence[np.ndarray], batch_size: int = 4, format: str = "BGR"
    ) -> list:
        """``__call__`` for many images, ``batch_size`` images per forward pass."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        results = []
        for start in range(0, len(images), batch_size):
            for inst in self._predict(images[start : start + batch_size], format, start):
                results.append(_as_dict(inst))
        return results

    def _to_model_input(self, image: np.ndarray, format: str, what: str = "image") -> dict:
        # uint8 (or uint16, by its high byte) HxWx3 / HxW; the rest refused: image_io.
        image = image_io.as_uint8_image(image, what)
        if format not in ("RGB", "BGR"):
            raise ValueError(f"format must be 'RGB' or 'BGR', got {format!r}.")
        if format != self.input_format:
            image = image[:, :, ::-1]
        height, width = image.shape[:2]
        # Shrunk above TEST.FACE.MAX_IMAGE_PIXELS; "height"/"width" keep the original size, to
        # which detector_postprocess maps the boxes back.
        image = image_io.limit_image_pixels(image, self.cfg.TEST.FACE.MAX_IMAGE_PIXELS, what)
        if self.aug is not None:
            image = self.aug.get_transform(image).apply_image(image)
        tensor = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)).astype("float32"))
        return {"image": tensor, "height": height, "width": width}

    def _autocast(self):
        if self.runner is None and self.precision in ("bf16", "fp16"):
            kind = self.cfg.MODEL.DEVICE.split(":")[0]
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
            return torch.autocast(kind, dtype=dtype)
        return contextlib.nullcontext()

    def to_batch(self, images, format="BGR"):
        """Images as one padded float32 batch for the exported graph (resized as at inference,
        in the model's channel order), and their model inputs."""
        inputs = [self._to_model_input(image, format) for image in images]
        batch, _ = runtimes.pad_batch(
            [x["image"].numpy() for x in inputs], self.cfg.MODEL.PIXEL_MEAN
        )
        return batch, inputs

    def _predict(self, images: Sequence[np.ndarray], format: str, first: int | None = None):
        """Thresholded, sorted Instances; ``first``: index of ``images[0]`` in the caller's
        list, for the messages (None: a single image)."""
        names = [f"images[{first + i}]" for i in range(len(images))] if first is not None else []
        names = names or ["image"] * len(images)
        inputs = [self._to_model_input(im, format, name) for im, name in zip(images, names)]
        # One forward pass per padded size: padding an image to a larger batch canvas changes
        # what the network sees (group norm statistics, features near the borders), so images
        # of other padded sizes run apart and each gets the detections it gets alone.
        divisibility = getattr(getattr(self.network, "backbone", None), "size_divisibility", 1)
        sizes = [tuple(x["image"].shape[-2:]) for x in inputs]
        outputs = [None] * len(inputs)
        with torch.no_grad(), self._autocast():
            for group in runtimes.padded_size_groups(sizes, divisibility):
                for i, out in zip(group, self.model([inputs[i] for i in group])):
                    outputs[i] = out["instances"]
        results = []
        for inst in outputs:
            inst = inst.to("cpu")
            inst.scores = inst.scores.float()
            inst = inst[inst.scores >= self.confidence_threshold]
            results.append(inst[torch.argsort(inst.scores, descending=True, stable=True)])
        return results


def _as_dict(inst: Instances) -> dict:
    return {
        "boxes": inst.pred_boxes.tensor.numpy().astype(np.float32),
        "scores": inst.scores.numpy().astype(np.float32),
    }


class _GraphModel:
    """An exported graph's runner behind the inference interface of a Detectron2 model (dicts
    with a CHW "image" and optional "height"/"width" in, ``[{"instances"}]`` out), so that the
    protocols with copies (:class:`ainnoface_d2.modeling.tta.AInnoFaceWithTTA`) run on every
    backend. Images of different sizes are padded into one batch as ``ImageList`` pads them."""

    training = False

    def __init__(self, runner, pixel_mean):
        self.runner = runner
        self.pixel_mean = pixel_mean

    def __call__(self, inputs):
        images = [np.asarray(x["image"], dtype=np.float32) for x in inputs]
        batch, sizes = runtimes.pad_batch(images, self.pixel_mean)
        num, boxes, scores, classes = self.runner(batch, sizes)[:4]
        outputs = []
        for i, (x, image) in enumerate(zip(inputs, images)):
            n, (h, w) = int(num[i]), image.shape[-2:]
            inst = Instances((h, w))
            inst.pred_boxes = Boxes(torch.from_numpy(np.array(boxes[i, :n], dtype=np.float32)))
            inst.scores = torch.from_numpy(np.array(scores[i, :n], dtype=np.float32))
            inst.pred_classes = torch.from_numpy(np.array(classes[i, :n], dtype=np.int64))
            inst = detector_postprocess(inst, x.get("height", h), x.get("width", w))
            outputs.append({"instances": inst})
        return outputs
