"""The detectron2 compatibility shims: applied only where a feature is missing, and working."""

import subprocess
import sys
import textwrap

import ainnoface_d2  # noqa: F401
from ainnoface_d2 import compat

import pytest
import torch


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
        # The MapDataset mend probes the class itself (test_map_dataset_* below).
        print([name for name in compat.APPLIED if not name.startswith("MapDataset")])
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


# ---------------------------------------------------------------------------------------------
# Mends of Detectron2 v0.6 behaviour, tested as Detectron2's own tests do
# ---------------------------------------------------------------------------------------------
def test_map_dataset_skips_items_whose_mapper_returns_none():
    """Detectron2's documented way to drop an image: the mapper returns None, and MapDataset
    gives another item instead (chosen by its seeded generator, so reproducibly)."""
    from detectron2.data.common import DatasetFromList, MapDataset

    def mapper(x):
        return None if x % 3 == 0 else x * 10

    ds = MapDataset(DatasetFromList(list(range(12)), copy=False), mapper)
    items = [ds[i] for i in range(12)]
    # Items the mapper keeps are returned as they are; the others are replaced by kept ones.
    assert [items[i] for i in range(12) if i % 3] == [i * 10 for i in range(12) if i % 3]
    assert all(v is not None and (v // 10) % 3 != 0 for v in items)
    again = MapDataset(DatasetFromList(list(range(12)), copy=False), mapper)
    assert [again[i] for i in range(12)] == items
    # A mapper that drops every item but one still finds that one.
    only = MapDataset(list(range(50)), lambda x: x if x == 37 else None)
    assert only[0] == 37


def test_map_dataset_mend_leaves_a_fixed_class_alone(monkeypatch):
    from detectron2.data import common

    class Fixed(common.MapDataset):
        """As Detectron2 main: sampling that works on Python 3.11."""

        def __init__(self, dataset, map_func):
            super().__init__(dataset, map_func)
            self._rng = compat.SetSamplingRandom(42)

    assert compat._map_dataset_retries(Fixed)
    monkeypatch.setattr(common, "MapDataset", Fixed)
    init = Fixed.__init__
    compat.mend_map_dataset()
    assert Fixed.__init__ is init


class _Quadratic(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(2))

    def forward(self, data):
        return {"loss": ((self.w - data) ** 2).sum()}


def _batches():
    while True:
        yield torch.zeros(2)


def _trainer(tmp_path, lr):
    """A SimpleTrainer with a torch StepLR under Detectron2's LRScheduler hook and a checkpointer
    that saves the hooks' state at iteration 10 and at the end."""
    from detectron2.engine import SimpleTrainer, hooks
    from fvcore.common.checkpoint import Checkpointer

    model = _Quadratic()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.1)
    trainer = SimpleTrainer(model, _batches(), optimizer)
    checkpointer = Checkpointer(model, str(tmp_path), optimizer=optimizer, trainer=trainer)
    trainer.register_hooks(
        [hooks.LRScheduler(scheduler=scheduler), hooks.PeriodicCheckpointer(checkpointer, 10)]
    )
    return trainer, scheduler, optimizer, checkpointer


def test_lr_scheduler_hook_resumes_a_torch_scheduler(tmp_path):
    """``--resume`` continues a torch scheduler where the checkpoint left it: 12 steps of
    StepLR(3, 0.1) from lr 0.1 end at 0.1 * 0.1**4, and so does the resumed run."""
    import ainnoface_d2.engine  # noqa: F401  (applies the mend)

    trainer, scheduler, optimizer, _ = _trainer(tmp_path, 0.1)
    trainer.train(0, 12)
    assert scheduler.last_epoch == 12
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.1**4)
    hook_state = torch.load(tmp_path / "model_final.pth", weights_only=False)["trainer"]["hooks"]
    assert hook_state["LRScheduler"]["last_epoch"] == 12

    trainer, scheduler, optimizer, checkpointer = _trainer(tmp_path, 999.0)
    checkpointer.resume_or_load("no_such_file.pth")
    assert trainer.iter == 11
    assert scheduler.last_epoch == 12  # not 0: the schedule goes on, not from its start
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.1**4)


def test_lr_scheduler_hook_mend_is_applied_only_where_missing():
    import ainnoface_d2.engine  # noqa: F401

    from detectron2.engine import hooks

    assert compat._hook_saves_torch_schedulers(hooks.LRScheduler, torch)
    methods = (hooks.LRScheduler.state_dict, hooks.LRScheduler.load_state_dict)
    compat.mend_lr_scheduler_hook()
    assert (hooks.LRScheduler.state_dict, hooks.LRScheduler.load_state_dict) == methods
