"""Make Detectron2 v0.6 importable on current torch / Pillow / setuptools.

Upstream detectron2 built from source works as it is; the pure-Python v0.6 that
``tools/install_detectron2.py`` installs from the PyPI sdist ``pb1-detectron2`` lacks three
things on a current stack. Each shim below is applied only where its feature is missing
(feature detection, never version checks: both builds report ``__version__ == "0.6"``):

* ``detectron2._C`` (compiled ops). Without it, ``detectron2.layers`` fails to import because
  ``deform_conv``/``rotated_boxes``/``roi_align_rotated`` import it at module level. AInnoFace uses
  none of those ops, nor the fast C++ COCOeval. A placeholder module is registered whose
  functions raise :class:`MissingCompiledOpError` naming the op; ``collect_env`` still works.
* ``PIL.Image.LINEAR``. Pillow 10 removed it; v0.6 uses it as a default argument in
  ``detectron2/data/transforms/transform.py``. It was an alias of ``BILINEAR``.
* ``pkg_resources``. setuptools 81 removed it; ``detectron2.model_zoo`` imports it at module level
  and uses only ``resource_filename``. A minimal module based on :mod:`importlib.resources`
  provides that one function.

:func:`apply` must run before ``detectron2.layers`` and ``detectron2.data`` are imported; ``import
ainnoface_d2`` calls it first thing, so import ``ainnoface_d2`` before other detectron2 modules.
:data:`APPLIED` lists the shims that were needed.

Two mends of v0.6 behaviour that Detectron2 main has fixed, each applied only where a probe of the
installed class shows the fault:

* ``MapDataset`` retries an item whose mapper returned None (Detectron2's documented way to skip
  an image) with ``random.Random.sample`` on a set, which Python 3.11 refuses (TypeError). Its
  random generator is given a ``sample`` that draws from the set's sorted members
  (:func:`mend_map_dataset`, applied by :func:`apply`).
* The ``LRScheduler`` hook saves and loads the state of ``torch.optim.lr_scheduler._LRScheduler``
  instances only; torch 2's own schedulers derive from ``LRScheduler`` instead, so a resumed run
  restarted them from step 0. The hook's ``state_dict``/``load_state_dict`` are given the test
  against the base class (:func:`mend_lr_scheduler_hook`, applied by :mod:`ainnoface_d2.engine`).

Training alone needs one more, which :mod:`ainnoface_d2.engine` applies when it is imported
(:func:`allow_cpu_ddp`): ``detectron2.engine.defaults.create_ddp_model`` (v0.6 and main) always
passes ``device_ids=[local_rank]``, which ``DistributedDataParallel`` rejects for a module on the
CPU. The wrapper passes ``device_ids=None`` for CPU models only (gloo training); GPU models get
exactly the original call.
"""

import importlib.util
import logging
import random
import sys
import types

__all__ = [
    "apply",
    "allow_cpu_ddp",
    "mend_lr_scheduler_hook",
    "mend_map_dataset",
    "APPLIED",
    "MissingCompiledOpError",
]

APPLIED = []


class MissingCompiledOpError(RuntimeError):
    pass


def _module_exists(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _make_placeholder_C():
    mod = types.ModuleType("detectron2._C")
    mod.__doc__ = "Placeholder for detectron2's compiled ops, added by ainnoface_d2.compat."
    mod.__file__ = __file__
    mod.get_compiler_version = lambda: "none (pure-Python detectron2, see ainnoface_d2.compat)"
    mod.get_cuda_version = lambda: "none (pure-Python detectron2, see ainnoface_d2.compat)"
    mod.has_cuda = lambda: False

    def __getattr__(name):
        if name.startswith("__"):
            raise AttributeError(name)

        def missing(*args, **kwargs):
            raise MissingCompiledOpError(
                f"detectron2._C.{name} is a compiled op, and this detectron2 was installed "
                "without them (pure-Python v0.6 from PyPI). AInnoFace does not need it; to use "
                "it, build detectron2 from source (see README.md, 'Installation')."
            )

        return missing

    mod.__getattr__ = __getattr__
    return mod


def _make_pkg_resources():
    mod = types.ModuleType("pkg_resources")
    mod.__doc__ = "Minimal pkg_resources (resource_filename only), added by ainnoface_d2.compat."

    def resource_filename(package, resource):
        import importlib.resources

        return str(importlib.resources.files(package).joinpath(resource))

    mod.resource_filename = resource_filename
    return mod


def apply():
    """Install the shims that this environment needs; idempotent."""
    if not _module_exists("detectron2"):
        raise ImportError(
            "detectron2 is not installed. Run `python tools/install_detectron2.py` (or `make "
            "install`), or build detectron2 from source; see README.md, 'Installation'."
        )
    if "detectron2._C" not in sys.modules and not _module_exists("detectron2._C"):
        import detectron2

        placeholder = _make_placeholder_C()
        sys.modules["detectron2._C"] = placeholder
        detectron2._C = placeholder
        APPLIED.append("detectron2._C placeholder")

    from PIL import Image

    if not hasattr(Image, "LINEAR"):
        Image.LINEAR = Image.BILINEAR
        APPLIED.append("PIL.Image.LINEAR = BILINEAR")

    if "pkg_resources" not in sys.modules and not _module_exists("pkg_resources"):
        sys.modules["pkg_resources"] = _make_pkg_resources()
        APPLIED.append("pkg_resources.resource_filename")

    mend_map_dataset()


class SetSamplingRandom(random.Random):
    """``random.Random`` whose ``sample`` also takes a set (drawn from its sorted members), as
    Python < 3.11 did by iterating it."""

    def sample(self, population, k, **kwargs):
        if isinstance(population, (set, frozenset)):
            population = sorted(population)
        return super().sample(population, k, **kwargs)


def _map_dataset_retries(cls):
    """Whether ``cls`` (Detectron2's MapDataset) survives an item whose mapper returns None."""
    try:
        return cls([0, 1], lambda x: None if x == 0 else x)[0] == 1
    except TypeError:
        return False


def mend_map_dataset():
    """Give MapDataset a generator that can sample its set of fallback candidates; idempotent."""
    from detectron2.data import common

    cls = common.MapDataset
    if getattr(cls.__init__, "_mended", False) or _map_dataset_retries(cls):
        return
    original = cls.__init__

    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        rng = SetSamplingRandom()
        rng.setstate(self._rng.getstate())  # the same draws as Detectron2's seeded generator
        self._rng = rng

    __init__._mended = True
    cls.__init__ = __init__
    APPLIED.append("MapDataset retries items whose mapper returned None")


def _hook_saves_torch_schedulers(hook_cls, torch):
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
    return bool(hook_cls(optimizer, scheduler).state_dict())


def mend_lr_scheduler_hook():
    """Let Detectron2's LRScheduler hook save and load torch's own schedulers; idempotent."""
    import torch
    from detectron2.engine import hooks

    cls = hooks.LRScheduler
    base = getattr(torch.optim.lr_scheduler, "LRScheduler", None)
    if base is None or getattr(cls, "_mended", False) or _hook_saves_torch_schedulers(cls, torch):
        return

    def state_dict(self):
        return self.scheduler.state_dict() if isinstance(self.scheduler, base) else {}

    def load_state_dict(self, state_dict):
        if isinstance(self.scheduler, base):
            logging.getLogger(hooks.__name__).info("Loading scheduler from state_dict ...")
            self.scheduler.load_state_dict(state_dict)

    cls.state_dict = state_dict
    cls.load_state_dict = load_state_dict
    cls._mended = True
    APPLIED.append("LRScheduler hook saves torch schedulers")


def allow_cpu_ddp():
    """Let Detectron2's ``create_ddp_model`` wrap a CPU model (multi-process gloo training);
    idempotent."""
    from detectron2.engine import defaults

    original = defaults.create_ddp_model
    if getattr(original, "_handles_cpu", False):
        return

    def create_ddp_model(model, **kwargs):
        from detectron2.utils import comm

        if comm.get_world_size() > 1 and all(p.device.type == "cpu" for p in model.parameters()):
            kwargs.setdefault("device_ids", None)
        return original(model, **kwargs)

    create_ddp_model._handles_cpu = True
    create_ddp_model.__doc__ = original.__doc__
    defaults.create_ddp_model = create_ddp_model
    APPLIED.append("create_ddp_model accepts CPU models")
