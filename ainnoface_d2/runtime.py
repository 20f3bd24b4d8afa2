"""CPU runtime: whether the CPU runs bf16 natively, and an allocator setting that keeps freed
memory in the process instead of returning it to the OS.

:func:`cpu_bf16_native` is the one bf16 capability check: the trainer's bf16 autocast and the
``"auto"`` precision of :class:`ainnoface_d2.FaceDetector` ask it, each for the runtime that will
run the bf16 kernels (PyTorch's, or OpenVINO's).

PyTorch's CPU tensors come from the C library's ``malloc``. glibc gives memory at the top of its
heap back to the OS once more than its trim threshold (by default about twice the largest block
freed so far, i.e. ~40 MB for the 20 MB feature maps of a 640x480 image) is free there, and so
every forward pass of a detector faults the same pages in again: measured at 640x480 with the
R50 config, ~57,000 page faults per AInnoFace forward and ~29,000 per stock RetinaNet forward,
at ~1.4 us each here, plus the slower first touch of the fresh memory. AInnoFace's subnets keep
more maps alive at once (RFE branches, two steps), so it pays more.

:func:`tune_cpu_allocator` raises glibc's trim threshold (``M_TRIM_THRESHOLD``) to 1 GiB and
fixes the mmap threshold (``M_MMAP_THRESHOLD``) at glibc's maximum, 32 MiB, through ``mallopt``:
after the first image, a forward pass takes its memory from the heap without faults. The same
advice is in PyTorch's CPU performance guides (there with jemalloc or tcmalloc preloaded, which
does the same and more). The price is that the process keeps up to its peak heap. It changes the
whole process, so the library never calls it by itself: ``tools/demo.py`` and
``tools/benchmark.py`` do (opt out with ``AINNOFACE_TUNE_MALLOC=0`` / ``--malloc default``), and
Python users may call it once at start-up. Elsewhere than glibc it does nothing.
"""

import ctypes
import ctypes.util
import logging
import os
import platform

__all__ = ["cpu_bf16_native", "tune_cpu_allocator"]

logger = logging.getLogger(__name__)

# From glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD = 1 << 30
MMAP_THRESHOLD = 32 << 20  # glibc's upper limit for M_MMAP_THRESHOLD on 64-bit systems

_applied = None


def cpu_bf16_native(backend="torch") -> bool:
    """Whether this CPU runs bf16 natively (AVX-512-BF16 or AMX) for ``backend``'s kernels:
    ``"torch"`` as ``torch.cpu`` reports it, ``"openvino"`` as OpenVINO's
    ``OPTIMIZATION_CAPABILITIES`` do (False without OpenVINO), ``"onnxruntime"``: False (its CPU
    provider has no bf16 route). Elsewhere bf16 is emulated and slower than fp32."""
    if backend == "openvino":
        try:
            import openvino as ov
        except ImportError:
            return False
        return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if backend != "torch":
        return False
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def tune_cpu_allocator(trim_threshold=TRIM_THRESHOLD, mmap_threshold=MMAP_THRESHOLD):
    """Apply the setting above once per process (later calls return the first result).

    Returns:
        bool: True if glibc accepted both values, False where it does not apply (not glibc,
        or the environment variable ``AINNOFACE_TUNE_MALLOC`` is ``0``).
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("AINNOFACE_TUNE_MALLOC", "1") == "0":
        logger.info("AINNOFACE_TUNE_MALLOC=0: leaving the C allocator's settings as they are")
        return False
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok_trim = mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)) == 1
    ok_mmap = mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) == 1
    _applied = ok_trim and ok_mmap
    if _applied:
        logger.info(
            "glibc malloc: trim threshold %d MiB, mmap threshold %d MiB (ainnoface_d2.runtime)",
            trim_threshold >> 20,
            mmap_threshold >> 20,
        )
    else:
        logger.warning("glibc rejected mallopt(trim=%s, mmap=%s)", trim_threshold, mmap_threshold)
    return _applied
