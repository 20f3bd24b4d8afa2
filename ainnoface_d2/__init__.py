"""AInnoFace (arXiv 1905.01585) as a Detectron2 extension.

``import ainnoface_d2`` applies the detectron2 compatibility shims (see :mod:`ainnoface_d2.compat`)
and fills Detectron2's registries: the backbone, the meta-architecture and the WIDER FACE datasets.
"""

import warnings

# Detectron2 and fvcore script a few functions when they are imported; current torch warns that
# torch.jit.script is deprecated each time, which would precede every tool's output.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", FutureWarning)
    from . import compat

    compat.apply()

    # Registration imports: the backbone and meta-architecture, the datasets, the evaluator.
    from . import data, evaluation, modeling  # noqa: E402,F401
    from .config import add_ainnoface_config, get_ainnoface_cfg  # noqa: E402
    from .predictor import FaceDetector  # noqa: E402
    from .runtime import tune_cpu_allocator  # noqa: E402

__all__ = ["FaceDetector", "add_ainnoface_config", "get_ainnoface_cfg", "tune_cpu_allocator"]
__version__ = "0.1.0"
