#!/usr/bin/env python
"""Draw AInnoFace detections on images, a video or a webcam stream.

Follows Detectron2's ``demo/demo.py`` and its ``VisualizationDemo`` (``demo/predictor.py``): the
model runs through :class:`ainnoface_d2.predictor.FaceDetector`, images are drawn with
Detectron2's ``Visualizer`` and videos with ``VideoVisualizer``. Examples::

    python tools/demo.py --config-file configs/ainnoface_R50.yaml --input photos/ \\
        --output out/ --opts MODEL.WEIGHTS output/ainnoface_R50/model_final.pth
    python tools/demo.py --config-file configs/ainnoface_R50.yaml --input "crowd/*.jpg" \\
        --output out/ --tta --opts MODEL.WEIGHTS model_final.pth
    python tools/demo.py --config-file ... --video-input street.mp4 --output out/
    python tools/demo.py --config-file ... --webcam
    python tools/demo.py --config-file ... --input photos/ --backend openvino --precision bf16

``--input`` takes files, glob patterns and folders (searched recursively for image files; the
drawings keep the folder's sub-paths under ``--output``). Files that cannot be read as images
(among them images above Pillow's decompression-bomb limit, ``PIL.Image.MAX_IMAGE_PIXELS``) are
reported by name and skipped; the number skipped is reported at the end. 16-bit images are read
by their high byte (:mod:`ainnoface_d2.data.image_io`); images above
``TEST.FACE.MAX_IMAGE_PIXELS`` are detected on a shrunk copy. An ``--output`` that would put a
drawing onto an input file is refused before anything runs. Without ``--output``
the drawings are shown in a window (this needs an OpenCV build with GUI support). On the CPU it
calls :func:`ainnoface_d2.runtime.tune_cpu_allocator` (``AINNOFACE_TUNE_MALLOC=0`` opts out).
"""

import argparse
import glob
import logging
import os
import sys
import time
from pathlib import Path

import ainnoface_d2
from ainnoface_d2.cli import run_cli
from ainnoface_d2.data.image_io import read_image
from ainnoface_d2.file_io import write_image
from ainnoface_d2.predictor import FaceDetector
from ainnoface_d2.runtime import tune_cpu_allocator
from ainnoface_d2.size_protocol import add_protocol_arguments

import cv2
import tqdm
from detectron2.data import MetadataCatalog
from detectron2.utils.video_visualizer import VideoVisualizer
from detectron2.utils.visualizer import ColorMode, Visualizer

logger = logging.getLogger("ainnoface_d2.demo")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
WINDOW_NAME = "AInnoFace detections"
# One fixed colour (matplotlib RGB) for every face in still images: Visualizer's default is a
# random colour per box, which makes drawings differ from run to run.
FACE_COLOR = (0.0, 1.0, 0.25)


def get_parser():
    parser = argparse.ArgumentParser(description="AInnoFace demo: draw detected faces.")
    parser.add_argument("--config-file", required=True, metavar="FILE", help="path to config file")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--input", nargs="+", help="image files, glob patterns (quote them) or folders"
    )
    source.add_argument("--video-input", help="a video file")
    source.add_argument("--webcam", action="store_true", help="take frames from webcam 0")
    parser.add_argument(
        "--output",
        help="a folder for the drawings (or, for a single image or video, a file name); "
        "without it they are shown in a window",
    )
    parser.add_argument(
        "--confidence-threshold", type=float, default=0.5, help="minimum score of drawn faces"
    )
    add_protocol_arguments(parser)
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: the config's)")
    parser.add_argument(
        "--backend",
        default="torch",
        choices=["torch", "onnxruntime", "openvino"],
        help="runtime (onnxruntime/openvino: pip install -e '.[deploy]'; MODEL.WEIGHTS may then "
        "be an exported model.onnx)",
    )
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16", "int8", "fp16", "auto"],
        help="fp32, bf16 (CPU: torch or openvino), int8 (onnxruntime/openvino, calibrated on "
        "the config's DATASETS.TRAIN), fp16 (GPU), auto (the fastest the machine supports)",
    )
    parser.add_argument(
        "--opts",
        default=[],
        nargs=argparse.REMAINDER,
        help="config overrides as KEY VALUE pairs, e.g. MODEL.WEIGHTS model_final.pth",
    )
    return parser


class VisualizationDemo:
    """Run a :class:`FaceDetector` and draw its detections (Detectron2's demo design)."""

    def __init__(self, detector: FaceDetector):
        self.detector = detector
        cfg = detector.cfg
        self.metadata = MetadataCatalog.get(
            cfg.DATASETS.TEST[0] if len(cfg.DATASETS.TEST) else "__unused"
        )

    def run_on_image(self, image):
        """``image``: HxWx3 BGR uint8. Returns (Instances, drawing as HxWx3 BGR uint8)."""
        instances = self.detector.predict_instances(image, format="BGR")
        visualizer = Visualizer(image[:, :, ::-1], self.metadata, instance_mode=ColorMode.IMAGE)
        drawn = visualizer.overlay_instances(
            boxes=instances.pred_boxes.tensor.numpy(),
            labels=self._labels(instances),
            assigned_colors=[FACE_COLOR] * len(instances),
        )
        return instances, drawn.get_image()[:, :, ::-1]

    def _labels(self, instances):
        names = self.metadata.get("thing_classes", None)
        labels = []
        for cls, score in zip(instances.pred_classes.tolist(), instances.scores.tolist()):
            name = names[cls] if names and cls < len(names) else str(cls)
            labels.append(f"{name} {score:.0%}")
        return labels

    def run_on_video(self, capture):
        """Yield (Instances, drawn BGR frame) for each frame of an open ``cv2.VideoCapture``."""
        video_visualizer = VideoVisualizer(self.metadata, ColorMode.IMAGE)
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            instances = self.detector.predict_instances(frame, format="BGR")
            drawn = video_visualizer.draw_instance_predictions(frame[:, :, ::-1], instances)
            yield instances, drawn.get_image()[:, :, ::-1]


def collect_images(items, parser):
    """Expand files, globs and folders into [(path, output name relative to --output)]."""
    found = []
    for item in items:
        path = Path(os.path.expanduser(item))
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
            images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
            if len(files) > len(images):
                logger.info(
                    "%s: ignoring %d file(s) without an image extension %s",
                    path,
                    len(files) - len(images),
                    IMAGE_EXTENSIONS,
                )
            found.extend((p, p.relative_to(path)) for p in images)
        elif path.is_file():
            found.append((path, Path(path.name)))
        else:
            matches = sorted(glob.glob(os.path.expanduser(item), recursive=True))
            matches = [Path(m) for m in matches if os.path.isfile(m)]
            if not matches:
                parser.error(f"--input: no such file or folder, and no file matches: {item}")
            found.extend((p, Path(p.name)) for p in matches)
    unique, seen, names = [], set(), {}
    for path, name in found:
        key = path.resolve()
        if key in seen:
            continue
        seen.add(key)
        if name in names:
            parser.error(
                f"--input: {names[name]} and {path} would both be written as {name}; "
                "pass their folder instead so that sub-paths are kept"
            )
        names[name] = path
        unique.append((path, name))
    return unique


def _output_path(output: Path, name: Path, single: bool, default_suffix: str) -> Path:
    """Where one drawing goes: ``output`` itself if it names a file, else ``output/name``."""
    if single and output.suffix.lower() in IMAGE_EXTENSIONS + (".mp4", ".avi", ".mkv"):
        return output
    target = output / name
    if target.suffix.lower() not in IMAGE_EXTENSIONS + (".mp4", ".avi", ".mkv"):
        target = target.with_name(target.name + default_suffix)
    return target


def _file_id(path: Path):
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_no_overwrite(targets, inputs, parser):
    """Refuse (one line, exit 2) when a drawing would go onto an input file: by path, or by
    link (the same file under another name)."""
    by_path = {Path(p).resolve(): p for p in inputs}
    by_id = {_file_id(Path(p)): p for p in inputs}
    by_id.pop(None, None)
    for target in targets:
        source = by_path.get(target.resolve()) or by_id.get(_file_id(target))
        if source is not None:
            parser.error(
                f"--output: the drawing of {source} would overwrite the input file {target}; "
                "choose an --output folder outside the input's"
            )


def _show(image, wait_ms: int) -> bool:
    """Show a drawing; False when the user pressed Esc (``wait_ms`` 0: wait for a key)."""
    try:
        cv2.namedWindow(WINDOW_NAME, cv2.WINDOW_NORMAL)
        cv2.imshow(WINDOW_NAME, image)
    except cv2.error as e:
        raise SystemExit(
            f"Cannot open a window ({e.err}); this OpenCV has no GUI support. Pass --output."
        ) from e
    return cv2.waitKey(wait_ms) != 27


def run_images(demo, images, output):
    """Draw every image; returns the number of files that could not be read."""
    single = len(images) == 1
    if output is not None and not single and output.suffix.lower() in IMAGE_EXTENSIONS:
        raise SystemExit(f"--output {output} names a file, but there are {len(images)} images")
    skipped = []
    for path, name in tqdm.tqdm(images, disable=single, desc="images", unit="img"):
        try:
            image = read_image(str(path), format="BGR")
        except Exception as e:  # any decoder failure, PIL's DecompressionBombError included
            logger.warning(
                "%s: cannot read this image (%s: %s); skipped.", path, type(e).__name__, e
            )
            skipped.append(path)
            continue
        start = time.perf_counter()
        instances, drawn = demo.run_on_image(image)
        logger.info("%s: %d face(s) in %.2fs", path, len(instances), time.perf_counter() - start)
        if output is None:
            if not _show(drawn, 0):
                break
            continue
        target = _output_path(output, name, single, ".jpg")
        target.parent.mkdir(parents=True, exist_ok=True)
        write_image(target, drawn)
    if skipped:
        logger.warning(
            "Skipped %d of %d file(s) that are not readable images: %s",
            len(skipped),
            len(images),
            ", ".join(str(p) for p in skipped),
        )
    return len(skipped)


def run_video(demo, capture, output_file, fps, total_frames=None, show=False):
    """Draw every frame of ``capture``; writes them to ``output_file`` (mp4v) when given."""
    writer = None
    frames = 0
    try:
        progress = tqdm.tqdm(
            demo.run_on_video(capture), total=total_frames, desc="frames", unit="frame"
        )
        for _, drawn in progress:
            if output_file is not None:
                if writer is None:
                    height, width = drawn.shape[:2]
                    output_file.parent.mkdir(parents=True, exist_ok=True)
                    writer = cv2.VideoWriter(
                        str(output_file), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height)
                    )
                    if not writer.isOpened():
                        raise SystemExit(f"Cannot open {output_file} for writing (codec mp4v)")
                writer.write(drawn)
            frames += 1
            if show and not _show(drawn, 1):
                break
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    return frames


def main(argv=None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    if not os.path.isfile(args.config_file):
        parser.error(f"--config-file: no such file: {args.config_file}")
    images = collect_images(args.input, parser) if args.input else None
    if images is not None and not images:
        parser.error(f"--input: no image files {IMAGE_EXTENSIONS} in {' '.join(args.input)}")
    if args.video_input and not os.path.isfile(args.video_input):
        parser.error(f"--video-input: no such file: {args.video_input}")
    output = Path(args.output) if args.output else None
    if output is not None and images is not None:
        single = len(images) == 1
        targets = [_output_path(output, name, single, ".jpg") for _, name in images]
        check_no_overwrite(targets, [path for path, _ in images], parser)
    if output is not None and args.video_input:
        name = Path(Path(args.video_input).stem + ".mp4")
        check_no_overwrite([_output_path(output, name, True, ".mp4")], [args.video_input], parser)

    detector = FaceDetector(
        args.config_file,
        device=args.device,
        confidence_threshold=args.confidence_threshold,
        opts=args.opts,
        tta=args.tta,
        protocol=args.protocol,
        backend=args.backend,
        precision=args.precision,
    )
    if detector.cfg.MODEL.DEVICE == "cpu":
        # Keep freed memory in the process between images (ainnoface_d2/runtime.py); opt out
        # with AINNOFACE_TUNE_MALLOC=0.
        tune_cpu_allocator()
    demo = VisualizationDemo(detector)

    if images is not None:
        skipped = run_images(demo, images, output)
        return 1 if images and skipped == len(images) else 0

    if args.video_input:
        capture = cv2.VideoCapture(args.video_input)
        if not capture.isOpened():
            parser.error(f"--video-input: OpenCV cannot open this video: {args.video_input}")
        fps = capture.get(cv2.CAP_PROP_FPS)
        if not fps or fps <= 0:
            logger.warning("%s reports no frame rate; writing at 30 fps", args.video_input)
            fps = 30.0
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        target = None
        if output is not None:
            target = _output_path(output, Path(Path(args.video_input).stem + ".mp4"), True, ".mp4")
        frames = run_video(demo, capture, target, fps, total, show=output is None)
        if frames == 0:
            raise SystemExit(
                f"{args.video_input}: OpenCV opened this video but read no frame from it; "
                "nothing written"
            )
        logger.info("%s: %d frame(s) drawn", args.video_input, frames)
        if target is not None:
            logger.info("Wrote %s", target)
        return 0

    capture = cv2.VideoCapture(0)
    if not capture.isOpened():
        raise SystemExit("Cannot open webcam 0")
    target = _output_path(output, Path("webcam.mp4"), True, ".mp4") if output else None
    run_video(demo, capture, target, 30.0, None, show=target is None)
    if target is None:
        cv2.destroyAllWindows()
    return 0


if __name__ == "__main__":
    from detectron2.utils.logger import setup_logger

    setup_logger(name="fvcore")
    setup_logger(name="ainnoface_d2")
    logger.info("ainnoface_d2 %s, arguments: %s", ainnoface_d2.__version__, sys.argv[1:])
    sys.exit(run_cli(main))
