"""Shared pytest setup: import ainnoface_d2 first (it applies the detectron2 compat shims), and
the small trained model that several test files use."""

import ainnoface_d2  # noqa: F401

import numpy as np
import pytest
import torch


@pytest.fixture(scope="session")
def synthetic_face_model(tmp_path_factory):
    """A small model that finds faces, trained once per test session.

    The config of ``_builtin_fixture.SYNTHETIC_FACE_OPTS``, trained 80 Adam steps on four
    synthetic 128x128 noise images with 1-3 bright elliptic 'faces' each (14-43 px wide, 1.25
    times as tall; ``test_model._synthetic_images`` with seed 0), which gives confident
    detections (scores > 0.5) of such faces in seconds. Returns ``cfg``, ``model`` (eval mode)
    and ``weights``, the checkpoint file. Used by tests/test_deploy.py and tests/test_tta.py.
    """
    from ainnoface_d2 import get_ainnoface_cfg

    from _builtin_fixture import SMALL_CONFIG, SYNTHETIC_FACE_OPTS, train_adam
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model
    from test_model import _synthetic_images, make_instances

    tmp = tmp_path_factory.mktemp("synthetic_face_model")
    cfg = get_ainnoface_cfg(SMALL_CONFIG, SYNTHETIC_FACE_OPTS)
    data = _synthetic_images(4, 128, np.random.RandomState(0))
    torch.manual_seed(0)
    inputs = [{"image": img, "instances": make_instances(b, (128, 128))} for img, b in data]
    model = train_adam(build_model(cfg), lambda _: inputs, 80)
    model.eval()
    DetectionCheckpointer(model, save_dir=str(tmp)).save("model")
    return {"cfg": cfg, "model": model, "weights": str(tmp / "model.pth")}
