#!/usr/bin/env python
"""Cost of the per-level candidate cap ``MODEL.AINNOFACE.TOPK_CANDIDATES_TEST`` at inference.

Times ``AInnoFace.forward_inference`` (per-level score threshold and top-k, box decoding, NMS)
on fixed synthetic head outputs, so that the number of candidates is controlled: step-2 face
logits drawn from N(``--logit-mean``, 2) (-3: about half of the anchors above the 0.05 score
threshold, a crowded image; -7: about 2 %), step-1 logits 0 (STC filters nothing), deltas
N(0, 0.1). The backbone and head are not run: their cost does not depend on the cap.

    python tools/benchmark_topk.py --config-file configs/ainnoface_R50.yaml
"""

import argparse
import statistics
import time

import ainnoface_d2  # noqa: F401  (compat shims before detectron2)
from ainnoface_d2 import get_ainnoface_cfg

import torch
from detectron2.modeling import build_model
from detectron2.structures import ImageList


def head_outputs(model, height, width, logit_mean, generator):
    """Features (only their sizes matter) and raw head outputs for one image."""
    shapes = [(-(-height // 2 ** (i + 2)), -(-width // 2 ** (i + 2))) for i in range(6)]
    anchors = model.head.num_anchors

    def randn(channels, shape, scale, shift=0.0):
        return torch.randn(1, channels, *shape, generator=generator) * scale + shift

    step1_logits = [torch.zeros(1, anchors, *shapes[i]) for i in model.stc_levels]
    step2_logits = [randn(anchors, s, 2.0, logit_mean) for s in shapes]
    step1_deltas = [randn(4 * anchors, shapes[i], 0.1) for i in model.str_levels]
    step2_deltas = [randn(4 * anchors, s, 0.1) for s in shapes]
    features = [torch.zeros(1, 1, *s) for s in shapes] * 2
    return features, (step1_logits, step2_logits, step1_deltas, step2_deltas)


def time_one(model, height, width, logit_mean, reps):
    features, predictions = head_outputs(
        model, height, width, logit_mean, torch.Generator().manual_seed(0)
    )
    images = ImageList(torch.zeros(1, 3, height, width), [(height, width)])
    times = []
    with torch.no_grad():
        for _ in range(reps + 1):  # the first call is not timed
            start = time.perf_counter()
            out = model.forward_inference(images, features, predictions)
            times.append(time.perf_counter() - start)
    return statistics.median(times[1:]) * 1000, len(out[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", default="configs/ainnoface_R50.yaml")
    parser.add_argument("--sizes", nargs="+", default=["1024x1024", "2100x1575"], help="WxH")
    parser.add_argument("--topk", nargs="+", type=int, default=[1000, 6000])
    parser.add_argument("--logit-mean", nargs="+", type=float, default=[-3.0, -7.0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # A ResNet-18 trunk builds faster; forward_inference does not depend on it.
    opts = ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "MODEL.RESNETS.DEPTH", "18"]
    opts += ["MODEL.RESNETS.RES2_OUT_CHANNELS", "64"]
    print("| size | candidates | TOPK | median ms | detections |")
    print("|---|---|---|---|---|")
    for topk in args.topk:
        cfg = get_ainnoface_cfg(
            args.config_file, opts + ["MODEL.AINNOFACE.TOPK_CANDIDATES_TEST", str(topk)]
        )
        model = build_model(cfg).eval()
        for size in args.sizes:
            width, height = (int(v) for v in size.lower().split("x"))
            for mean in args.logit_mean:
                ms, n = time_one(model, height, width, mean, args.reps)
                print(f"| {size} | logits N({mean:g}, 2) | {topk} | {ms:.0f} | {n} |", flush=True)


if __name__ == "__main__":
    main()
