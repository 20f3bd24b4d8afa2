"""``WiderFaceEvaluator``: Detectron2's ``DatasetEvaluator`` for the WIDER FACE protocol.

It collects the detections of a registered val split, takes the official ground truth from the
dataset dicts (the converter writes ``wider_index`` / ``wider_bbox`` / ``wider_{easy,medium,hard}``
on every annotation, from :func:`ainnoface_d2.data.wider_face_format.load_eval_ground_truth`) and
scores them with :mod:`ainnoface_d2.evaluation.wider_face_protocol`. Every AP it reports carries two
labels: the *test-size protocol* the detections were made under (``original``, ``vga``,
``multiscale``, ``pyramid``; see :mod:`ainnoface_d2.size_protocol`) and the *scoring protocol*
(``matlab``, the official tool, or ``python``, the popular port).
"""

import copy
import itertools
import logging
import os
from collections import OrderedDict

import numpy as np
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from tabulate import tabulate

from ..data.wider_face_format import SETTINGS, WiderImageGT, image_key
from ..file_io import atomic_write_json
from ..size_protocol import SIZE_PROTOCOLS
from .wider_face_protocol import PROTOCOLS, evaluate, plot_pr_curves, write_submission_dir

logger = logging.getLogger(__name__)

__all__ = [
    "WiderFaceEvaluator",
    "gt_from_dataset_dicts",
]


def gt_from_dataset_dicts(dataset_dicts, dataset_name="<dataset>", settings=SETTINGS):
    """Ground truth from Detectron2 dataset dicts of a converted WIDER FACE val split.

    Every annotation must carry ``wider_index`` (0-based position in the official
    ``face_bbx_list``), ``wider_bbox`` (the official ``[x, y, w, h]``) and ``wider_<setting>``
    flags; the image is identified by ``file_name`` (``.../<event>/<name>.jpg``).
    """
    gt = OrderedDict()
    required = ["wider_index", "wider_bbox"] + [f"wider_{s}" for s in settings]
    for record in dataset_dicts:
        key = image_key(record["file_name"])
        anns = record.get("annotations", [])
        for ann in anns:
            missing = [k for k in required if k not in ann]
            if missing:
                raise ValueError(
                    f"dataset {dataset_name!r}: annotation of {record['file_name']} lacks "
                    f"{', '.join(missing)}; only a WIDER FACE val split converted with the "
                    "official evaluation ground truth (wider_face_val.mat) can be evaluated "
                    "with the WIDER FACE protocol"
                )
        n = max((int(a["wider_index"]) for a in anns), default=-1) + 1
        boxes = np.zeros((n, 4), dtype=np.float64)
        seen = np.zeros(n, dtype=bool)
        keep = {s: np.zeros(n, dtype=bool) for s in settings}
        for ann in anns:
            k = int(ann["wider_index"])
            if k < 0 or seen[k]:
                raise ValueError(
                    f"dataset {dataset_name!r}: {record['file_name']} has wider_index {k} "
                    "negative or repeated"
                )
            seen[k] = True
            boxes[k] = np.asarray(ann["wider_bbox"], dtype=np.float64).reshape(4)
            for s in settings:
                keep[s][k] = bool(ann[f"wider_{s}"])
        if not seen.all():
            raise ValueError(
                f"dataset {dataset_name!r}: {record['file_name']} lacks the ground-truth boxes "
                f"with wider_index {np.flatnonzero(~seen).tolist()}: the evaluator needs every "
                "official box"
            )
        if key in gt:
            raise ValueError(f"dataset {dataset_name!r}: image {key[0]}/{key[1]} appears twice")
        gt[key] = WiderImageGT(boxes, keep)
    return gt


class WiderFaceEvaluator(DatasetEvaluator):
    """Detectron2 evaluator: WIDER FACE easy / medium / hard AP of a registered val split.

    A dataset whose metadata has ``wider_face_settings`` is scored in those settings instead
    (``("all",)`` for the datasets of ``datasets/prepare_faces.py``: every face that is not an
    ignore region).

    ``evaluate`` returns ``{"wider_face": {"AP_easy", "AP_medium", "AP_hard"}}`` in percent, logs
    them in a table beside the dataset, the test-size protocol and the scoring protocol, and, with
    ``output_dir``, writes the submission folder, a PR-curve PNG and ``wider_face_metrics.json``,
    both labelled with the two protocols.
    """

    def __init__(
        self,
        dataset_name,
        output_dir=None,
        distributed=True,
        write_submission=True,
        plot_pr_curves=True,
        protocol="matlab",
        size_protocol="original",
    ):
        """
        Args:
            protocol: the scoring protocol, ``"matlab"`` or ``"python"``.
            size_protocol: the test-size protocol the predictions come from (a label only:
                ``original``, ``vga``, ``multiscale`` or ``pyramid``).
        """
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        if size_protocol not in SIZE_PROTOCOLS:
            raise ValueError(
                f"size_protocol must be one of {SIZE_PROTOCOLS}, got {size_protocol!r}"
            )
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._distributed = distributed
        self._write_submission = write_submission
        self._plot = plot_pr_curves
        self._protocol = protocol
        self._size_protocol = size_protocol
        self._settings = tuple(
            MetadataCatalog.get(dataset_name).get("wider_face_settings", SETTINGS)
        )
        self.reset()

    def reset(self):
        self._predictions = {}

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            instances = out["instances"].to("cpu")
            boxes = instances.pred_boxes.tensor.numpy().astype(np.float32).reshape(-1, 4)
            xywh = np.empty((len(boxes), 5), dtype=np.float32)
            xywh[:, :2] = boxes[:, :2]
            xywh[:, 2:4] = boxes[:, 2:4] - boxes[:, :2]
            xywh[:, 4] = instances.scores.numpy().astype(np.float32)
            self._predictions[image_key(inp["file_name"])] = xywh.astype(np.float64)

    def _gathered_predictions(self):
        if not self._distributed:
            return copy.copy(self._predictions)
        comm.synchronize()
        gathered = comm.gather(self._predictions, dst=0)
        if not comm.is_main_process():
            return None
        return dict(itertools.chain.from_iterable(p.items() for p in gathered))

    def _labels(self):
        return {"size_protocol": self._size_protocol, "scoring_protocol": self._protocol}

    def evaluate(self):
        predictions = self._gathered_predictions()
        if predictions is None:
            return {}
        from detectron2.data import DatasetCatalog

        dicts = DatasetCatalog.get(self._dataset_name)
        gt = gt_from_dataset_dicts(dicts, self._dataset_name, settings=self._settings)
        if not predictions:
            logger.warning("WiderFaceEvaluator received no predictions.")
        missing = sum(k not in predictions for k in gt)
        if missing:
            logger.warning("%d of %d images have no predictions.", missing, len(gt))
        results = evaluate(predictions, gt, protocol=self._protocol, settings=self._settings)
        metrics = OrderedDict((f"AP_{s}", 100.0 * results[s]) for s in self._settings)
        row = [self._dataset_name, self._size_protocol, self._protocol, *metrics.values()]
        headers = ["dataset", "test size", "scoring", *(f"AP {s}" for s in self._settings)]
        table = tabulate([row], headers=headers, tablefmt="pipe", floatfmt=".2f")
        logger.info("WIDER FACE evaluation, AP in %%:\n%s", table)
        if self._output_dir:
            self._write_outputs(predictions, results, metrics)
        return OrderedDict({"wider_face": metrics})

    def _write_outputs(self, predictions, results, metrics):
        os.makedirs(self._output_dir, exist_ok=True)
        if self._write_submission:
            folder = os.path.join(self._output_dir, "wider_face_submission")
            write_submission_dir(folder, predictions)
        if self._plot:
            plot_pr_curves(
                results,
                os.path.join(self._output_dir, "wider_face_pr_curves.png"),
                title=f"{self._dataset_name} ({self._size_protocol} test size, "
                f"{self._protocol} scoring)",
            )
        atomic_write_json(
            os.path.join(self._output_dir, "wider_face_metrics.json"),
            {"dataset": self._dataset_name, **self._labels(), **metrics},
            indent=2,
        )
