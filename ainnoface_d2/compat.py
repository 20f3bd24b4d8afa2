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

Training alone needs one more, which :mod:`ainnoface_d2.engine` applies when it is imported
(:func:`allow_cpu_ddp`): ``detectron2.engine.defaults.create_ddp_model`` (v0.6 and main) always
passes ``device_ids=[local_rank]``, which ``DistributedDataParallel`` rejects for a module on the
CPU. The wrapper passes ``device_ids=None`` for CPU models only (gloo training); GPU models get
exactly the original call.
"""

import importlib.util
import sys
import types

__all__ = ["apply", "allow_cpu_ddp", "APPLIED", "MissingCompiledOpError"]

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
