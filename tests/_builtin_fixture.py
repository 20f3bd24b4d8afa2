"""Test helpers: a tiny built-in face dataset in a temporary directory, a tiny training config,
and the options of the small model trained on synthetic faces (``tests/conftest.py``).

The dataset helpers are used by ``tests/test_distributed.py``, ``tests/test_resume.py`` and
``tests/test_amp.py``. The dataset is written by
:func:`ainnoface_d2.builtin_faces.build_builtin_faces` in the official WIDER FACE layout,
converted to COCO JSON by :func:`ainnoface_d2.data.wider_face.convert_wider_face` and registered
under a prefix of the caller's choice, so that it never collides with the default
``builtin_faces_*`` names.
"""

import os

import ainnoface_d2  # noqa: F401  (compat shims before detectron2)
from ainnoface_d2.builtin_faces import build_builtin_faces
from ainnoface_d2.data.datasets import register_wider_face_splits
from ainnoface_d2.data.wider_face import convert_wider_face

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL_CONFIG = os.path.join(REPO, "configs", "ainnoface_R18_cpu.yaml")


def make_tiny_faces(root, num_train=8, num_val=4, seed=0):
    """Write (once) and convert the built-in dataset under ``root``; returns ``root``."""
    root = os.fspath(root)
    build_builtin_faces(root, seed=seed, num_train=num_train, num_val=num_val, num_test=0)
    if not all(
        os.path.isfile(os.path.join(root, "annotations", f"wider_face_{s}.json"))
        for s in ("train", "val")
    ):
        convert_wider_face(root, splits=("train", "val"))
    return root


def register_tiny_faces(prefix, root):
    """Register ``<prefix>_train`` / ``<prefix>_val`` for ``root``; returns the two names."""
    return register_wider_face_splits(prefix, root, splits=("train", "val"))


# The CPU config narrowed further so that a model builds and trains in seconds.
TINY_MODEL_OPTS = {
    "MODEL.FPN.OUT_CHANNELS": 32,
    "MODEL.AINNOFACE.USE_RFE": True,  # the paper's head (the small config has none)
    "MODEL.AINNOFACE.RFE_BRANCH_CHANNELS": 8,
    "MODEL.AINNOFACE.C6_CHANNELS": 64,
    "MODEL.AINNOFACE.C7_CHANNELS": 32,
}


# The model of the ``synthetic_face_model`` fixture (tests/conftest.py): the tiny model with the
# paper's head (no norm, as in the R50/R152 configs), tested in one pass at the original size.
SYNTHETIC_FACE_OPTS = []
for _k, _v in {
    **TINY_MODEL_OPTS,
    "MODEL.AINNOFACE.HEAD_NORM": "",
    "INPUT.MIN_SIZE_TEST": 0,
    "TEST.FACE.PROTOCOL": "original",
}.items():
    SYNTHETIC_FACE_OPTS += [_k, str(_v)]


def train_adam(model, batch, steps, lr=2e-3, drop_at=None):
    """Train ``model`` in place with Adam for ``steps`` steps; ``batch(step)`` gives the inputs
    of each step. From step ``drop_at`` on (if given) the learning rate is 10x lower."""
    import torch
    from detectron2.utils.events import EventStorage

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    with EventStorage():
        for step in range(steps):
            if step == drop_at:
                for group in opt.param_groups:
                    group["lr"] = lr / 10
            loss = sum(model(batch(step)).values())
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


def tiny_train_opts(prefix, output_dir, **overrides):
    """Command-line style overrides that shrink ``configs/ainnoface_R18_cpu.yaml`` to seconds.

    The model of :data:`TINY_MODEL_OPTS` (also ``tiny_cfg`` in tests/test_model.py), 128x128 crops,
    test images resized to a short side of 128, no periodic evaluation or extra outputs.
    """
    opts = {
        **TINY_MODEL_OPTS,
        "MODEL.AINNOFACE.TOPK_CANDIDATES_TEST": 200,
        "INPUT.FACE.TRAIN_SIZE": 128,
        "INPUT.MIN_SIZE_TEST": 128,
        "INPUT.MAX_SIZE_TEST": 192,
        "DATASETS.TRAIN": f"('{prefix}_train',)",
        "DATASETS.TEST": f"('{prefix}_val',)",
        "DATALOADER.NUM_WORKERS": 0,
        # fp32 steps (the config's CPU bf16 route has its own test, tests/test_amp.py).
        "SOLVER.AMP.ENABLED": False,
        # One evaluation pass (the config also runs the "pyramid" protocol).
        "TEST.FACE.SIZE_PROTOCOLS": "['original']",
        "SOLVER.IMS_PER_BATCH": 2,
        "SOLVER.WARMUP_ITERS": 2,
        # A step schedule (the config's is cosine), which the tests write out.
        "SOLVER.LR_SCHEDULER_NAME": "WarmupMultiStepLR",
        "SOLVER.STEPS": "(6,)",
        "SOLVER.MAX_ITER": 8,
        "SOLVER.CHECKPOINT_PERIOD": 1000,
        "TEST.EVAL_PERIOD": 0,
        "TEST.DETECTIONS_PER_IMAGE": 100,
        "TEST.WIDER_FACE.WRITE_SUBMISSION": False,
        "TEST.WIDER_FACE.PLOT_PR_CURVES": False,
        "TEST.WIDER_FACE.COCO_EVAL": False,
        "SEED": 0,
        "OUTPUT_DIR": os.fspath(output_dir),
    }
    opts.update(overrides)
    out = []
    for k, v in opts.items():
        out += [k, str(v)]
    return out
