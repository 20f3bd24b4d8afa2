#!/usr/bin/env python
"""The main job on the built-in dataset: build it, convert it, train, evaluate, draw.

    make quickstart            # or: .venv/bin/python tools/quickstart.py

This is the full WIDER FACE workflow in miniature, on a CPU (15-20 minutes on 2 cores):

1. ``datasets/prepare_builtin_faces.py``: writes ``$DETECTRON2_DATASETS/builtin_faces`` (default
   ``datasets/builtin_faces``) in exactly the WIDER FACE layout, from real face crops shipped with
   scikit-image (skipped when it is already there);
2. ``datasets/prepare_wider_face.py``: converts its annotations to COCO JSON, as for WIDER FACE;
3. ``tools/train_net.py --config-file configs/ainnoface_R18_cpu.yaml --resume``: trains the small
   CPU model with Detectron2's DefaultTrainer, then evaluates it on the val split with the official
   WIDER FACE protocol (easy / medium / hard AP) and COCO AP, once at the original scale and once
   with test-time augmentation (``TEST.AUG.ENABLED``: flip + 0.5x copy, box voting). ``--resume``
   continues an interrupted run, and only re-evaluates a finished one;
4. ``tools/demo.py``: draws the detections on a few val images with Detectron2's Visualizer.

Extra arguments are passed to ``tools/train_net.py`` as config overrides, for example
``tools/quickstart.py SOLVER.MAX_ITER 100``.
"""

import glob
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "ainnoface_R18_cpu.yaml")
OUTPUT = os.path.join(REPO, "output", "quickstart")


def run(cmd):
    print("\n+ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)


def main(overrides):
    datasets = os.path.expanduser(os.getenv("DETECTRON2_DATASETS", os.path.join(REPO, "datasets")))
    root = os.path.join(datasets, "builtin_faces")
    env_note = "" if os.getenv("DETECTRON2_DATASETS") else f" (DETECTRON2_DATASETS={datasets})"
    os.environ["DETECTRON2_DATASETS"] = datasets
    print(f"[1/4] built-in dataset in {root}{env_note}", flush=True)
    run([sys.executable, "datasets/prepare_builtin_faces.py", "--root", root])

    annotations = [
        os.path.join(root, "annotations", f"wider_face_{s}.json") for s in ("train", "val")
    ]
    print("[2/4] conversion to COCO JSON", flush=True)
    if all(os.path.isfile(a) for a in annotations):
        print("  up to date: " + ", ".join(annotations))
    else:
        run(
            [
                sys.executable,
                "datasets/prepare_wider_face.py",
                "--root",
                root,
                "--splits",
                "train",
                "val",
            ]
        )

    print("[3/4] training + WIDER FACE evaluation", flush=True)
    run(
        [sys.executable, "tools/train_net.py", "--config-file", CONFIG, "--resume"]
        + ["OUTPUT_DIR", OUTPUT, "TEST.AUG.ENABLED", "True"]
        + list(overrides)
    )

    print("[4/4] drawing detections", flush=True)
    images = sorted(glob.glob(os.path.join(root, "WIDER_val", "images", "*", "*.jpg")))[::10][:4]
    demo_dir = os.path.join(OUTPUT, "demo")
    os.makedirs(demo_dir, exist_ok=True)
    run(
        [sys.executable, "tools/demo.py", "--config-file", CONFIG, "--input", *images]
        + ["--output", demo_dir, "--confidence-threshold", "0.5"]
        + ["--opts", "MODEL.WEIGHTS", os.path.join(OUTPUT, "model_final.pth")]
    )

    inference = os.path.join(OUTPUT, "inference", "builtin_faces_val")
    inference_tta = os.path.join(OUTPUT, "inference_TTA", "builtin_faces_val")
    print("\nDone. Results:")
    print(f"  model:            {os.path.join(OUTPUT, 'model_final.pth')}")
    print(f"  metrics:          {os.path.join(inference, 'wider_face_metrics.json')}")
    print(f"  metrics with TTA: {os.path.join(inference_tta, 'wider_face_metrics.json')}")
    print(f"  PR curves:        {os.path.join(inference, 'wider_face_pr_curves.png')}")
    print(f"  submission files: {os.path.join(inference, 'wider_face_submission')}")
    print(f"  drawn images:     {demo_dir}")
    for f in sorted(glob.glob(os.path.join(demo_dir, "*"))):
        print(f"    {f}")
    print("\nWIDER FACE AP on builtin_faces_val (easy / medium / hard, %):")
    for name, folder in (("original scale", inference), ("with TTA", inference_tta)):
        path = os.path.join(folder, "wider_face_metrics.json")
        if os.path.isfile(path):
            with open(path) as f:
                m = json.load(f)
            aps = " / ".join(f"{m[k]:.1f}" for k in ("AP_easy", "AP_medium", "AP_hard"))
            print(f"  {name:15s} {aps}")


if __name__ == "__main__":
    main(sys.argv[1:])
