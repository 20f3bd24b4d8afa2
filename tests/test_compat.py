"""The detectron2 compatibility shims: applied only where a feature is missing, and working."""

import subprocess
import sys
import textwrap

import ainnoface_d2  # noqa: F401
from ainnoface_d2 import compat

import pytest


def run_python(code):
    res = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().splitlines()[-1]


def test_detectron2_modules_import_and_model_zoo_configs_resolve():
    import detectron2.data.transforms as T
    from detectron2 import model_zoo
    from PIL import Image

    path = model_zoo.get_config_file("COCO-Detection/retinanet_R_50_FPN_1x.yaml")
    assert path.endswith("retinanet_R_50_FPN_1x.yaml")
    # the default interpolation of ExtentTransform resolves to bilinear
    assert T.ExtentTransform((0, 0, 4, 4), (2, 2)).interp == Image.BILINEAR


def test_placeholder_compiled_ops_fail_clearly():
    import detectron2

    if "detectron2._C placeholder" not in compat.APPLIED:
        pytest.skip("this detectron2 has its compiled ops")
    from detectron2.layers.rotated_boxes import pairwise_iou_rotated

    with pytest.raises(compat.MissingCompiledOpError, match="box_iou_rotated.*build detectron2"):
        pairwise_iou_rotated(None, None)
    assert "none" in detectron2._C.get_compiler_version()
    from detectron2.utils.collect_env import collect_env_info

    assert "detectron2" in collect_env_info()


def test_shims_leave_present_features_alone():
    """With a compiled detectron2._C, Pillow's LINEAR and pkg_resources present (faked here, as on
    an upstream build from source), apply() changes nothing."""
    out = run_python(
        """
        import sys, types
        fake_c = types.ModuleType("detectron2._C")
        sys.modules["detectron2._C"] = fake_c
        from PIL import Image
        Image.LINEAR = "sentinel"
        fake_pr = types.ModuleType("pkg_resources")
        sys.modules["pkg_resources"] = fake_pr
        from ainnoface_d2 import compat
        assert sys.modules["detectron2._C"] is fake_c
        assert Image.LINEAR == "sentinel" and sys.modules["pkg_resources"] is fake_pr
        print(compat.APPLIED)
        """
    )
    # The CPU-DDP wrapper, which no detectron2 version makes unnecessary, is training's own.
    assert out == "[]"


def test_cpu_ddp_wrapper_comes_with_the_trainer_only():
    out = run_python(
        """
        import ainnoface_d2
        from detectron2.engine import defaults
        before = getattr(defaults.create_ddp_model, "_handles_cpu", False)
        import ainnoface_d2.engine
        print(before, defaults.create_ddp_model._handles_cpu)
        """
    )
    assert out == "False True"


def test_apply_is_idempotent():
    before = list(compat.APPLIED)
    compat.apply()
    assert compat.APPLIED == before
