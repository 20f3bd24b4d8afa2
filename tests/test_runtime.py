"""ainnoface_d2/runtime.py: the opt-in allocator setting."""

import os
import subprocess
import sys
import textwrap

import pytest

_FAULTS = textwrap.dedent(
    """
    import resource, sys, torch
    from ainnoface_d2.runtime import tune_cpu_allocator
    print(tune_cpu_allocator())
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    counts = []
    for _ in range(8):
        before = faults()
        maps = [torch.empty(5 << 20).fill_(1.0) for _ in range(3)]  # three 20 MiB maps
        del maps
        counts.append(faults() - before)
    print(max(counts[4:]))
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tuned_allocator_reuses_freed_memory():
    """Three 20 MiB maps allocated and freed, eight times: after tune_cpu_allocator() the last
    four rounds take all their memory from the heap without a page fault. (With glibc's
    defaults they usually fault two of the maps in anew, ~10,000 4-KiB faults a round; that is
    glibc's behaviour, reported but not asserted.) AINNOFACE_TUNE_MALLOC=0 opts out."""
    out = {}
    for setting in ("1", "0"):
        env = dict(os.environ, AINNOFACE_TUNE_MALLOC=setting, OMP_NUM_THREADS="1")
        res = subprocess.run(
            [sys.executable, "-c", _FAULTS], env=env, capture_output=True, text=True, check=True
        )
        applied, faults = res.stdout.split()[-2:]
        out[setting] = (applied, int(faults))
    assert out["1"][0] == "True" and out["0"][0] == "False"
    assert out["1"][1] < 100, out


def _fake_cpu(monkeypatch, torch_bf16, openvino_bf16):
    """A CPU whose bf16 support torch and OpenVINO report as given."""
    import types

    import torch

    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, name, lambda: torch_bf16, raising=False)
    caps = ["FP32", "BF16"] if openvino_bf16 else ["FP32"]
    core = types.SimpleNamespace(get_property=lambda device, key: caps)
    monkeypatch.setitem(sys.modules, "openvino", types.SimpleNamespace(Core=lambda: core))


@pytest.mark.parametrize("torch_bf16,openvino_bf16", [(True, False), (False, True)])
def test_bf16_check_asks_the_runtime_that_runs_the_kernels(monkeypatch, torch_bf16, openvino_bf16):
    from ainnoface_d2.export.runtimes import resolve_precision
    from ainnoface_d2.runtime import cpu_bf16_native

    _fake_cpu(monkeypatch, torch_bf16, openvino_bf16)
    assert cpu_bf16_native("torch") is torch_bf16
    assert cpu_bf16_native("openvino") is openvino_bf16
    assert cpu_bf16_native("onnxruntime") is False
    assert resolve_precision("torch", "auto") == ("bf16" if torch_bf16 else "fp32")
    assert resolve_precision("openvino", "auto") == ("bf16" if openvino_bf16 else "fp32")
    assert resolve_precision("onnxruntime", "auto") == "fp32"


def test_bf16_check_without_openvino(monkeypatch):
    from ainnoface_d2.runtime import cpu_bf16_native

    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    assert cpu_bf16_native("openvino") is False
