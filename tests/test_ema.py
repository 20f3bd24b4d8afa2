"""MODEL_EMA: the moving average of the weights that training writes into model_final.pth.

The expected average is written out here in closed form from the recorded weights of every step:
with a constant decay d (RAMP_ITERS 0) and w_0 the weights before the first step,

    ema_n = d^n w_0 + sum_{i=1..n} (1 - d) d^(n - i) w_i,

and with the ramp, d_t = DECAY (1 - exp(-t / RAMP)): ema_1 = (1 - d_1) w_1 + d_1 w_0 and so on.
"""

import math
import weakref

import ainnoface_d2  # noqa: F401
from ainnoface_d2 import get_ainnoface_cfg
from ainnoface_d2.ema import EMAHook
from ainnoface_d2.engine import Trainer

import pytest
import torch
from _builtin_fixture import SMALL_CONFIG, make_tiny_faces, register_tiny_faces, tiny_train_opts
from detectron2.engine import HookBase

DECAY, MAX_ITER, PERIOD = 0.6, 6, 3


class _Recorder(HookBase):
    """Copies of the trained weights before training and after each optimizer step (it runs
    before the EMA hook, which replaces the weights at the last step)."""

    def __init__(self):
        self.states = []

    def _snapshot(self):
        self.states.append(
            {k: v.detach().clone() for k, v in self.trainer.model.state_dict().items()}
        )

    def before_train(self):
        self._snapshot()

    def after_step(self):
        self._snapshot()


def _trainer(tmp_path, prefix, **overrides):
    root = make_tiny_faces(tmp_path / "datasets" / "builtin_faces")
    register_tiny_faces(prefix, root)
    opts = tiny_train_opts(
        prefix,
        tmp_path / "out",
        **{
            "MODEL_EMA.ENABLED": True,
            "MODEL_EMA.DECAY": DECAY,
            "SOLVER.MAX_ITER": MAX_ITER,
            "SOLVER.STEPS": "(4,)",
            "SOLVER.CHECKPOINT_PERIOD": PERIOD,
            "SOLVER.AMP.ENABLED": False,
            "DATASETS.TEST": "()",
            **overrides,
        },
    )
    cfg = get_ainnoface_cfg(SMALL_CONFIG, opts)
    cfg.freeze()
    trainer = Trainer(cfg)
    recorder = _Recorder()
    recorder.trainer = weakref.proxy(trainer)
    trainer._hooks.insert(0, recorder)
    return trainer, recorder


def _closed_form(states, decays):
    """ema after len(decays) updates; ``decays[t - 1]`` is d_t."""
    out = {}
    for k, w0 in states[0].items():
        if not w0.is_floating_point():
            out[k] = states[-1][k]
            continue
        n = len(decays)
        acc = w0.double() * math.prod(decays)
        for i in range(1, n + 1):
            acc = acc + (1 - decays[i - 1]) * math.prod(decays[i:]) * states[i][k].double()
        out[k] = acc
    return out


def test_final_checkpoint_holds_the_average(tmp_path):
    trainer, recorder = _trainer(tmp_path, "ema_final")
    trainer.resume_or_load(resume=False)
    trainer.train()
    assert len(recorder.states) == MAX_ITER + 1
    expected = _closed_form(recorder.states, [DECAY] * MAX_ITER)
    final = torch.load(tmp_path / "out" / "model_final.pth", map_location="cpu", weights_only=False)
    moved = 0
    for k, v in expected.items():
        got = final["model"][k]
        if not v.is_floating_point():  # BatchNorm's step counts: the last step's
            assert torch.equal(got, v), k
            continue
        assert torch.allclose(got.double(), v, rtol=1e-5, atol=1e-6), k
        assert torch.equal(trainer.model.state_dict()[k], got), k  # the model in memory too
        if not torch.allclose(got, recorder.states[-1][k]):
            moved += 1
    # The average differs from the last trained weights (the test would pass without EMA
    # otherwise): every trained tensor whose weights changed over the run.
    changed = sum(
        1 for k, v in recorder.states[0].items()
        if v.is_floating_point() and not torch.equal(v, recorder.states[-1][k])
    )  # fmt: skip
    assert changed > 10 and moved >= 0.9 * changed, (moved, changed)
    assert final["trainer"]["hooks"]["EMAHook"]["updates"] == MAX_ITER


def test_ramp_and_resume_continue_the_average(tmp_path):
    ramp = 2.0
    trainer, recorder = _trainer(tmp_path, "ema_resume", **{"MODEL_EMA.RAMP_ITERS": ramp})
    trainer.resume_or_load(resume=False)
    trainer.train()
    decays = [DECAY * (1 - math.exp(-t / ramp)) for t in range(1, MAX_ITER + 1)]
    # The checkpoint of iteration PERIOD - 1 holds the average of the first PERIOD steps.
    ckpt_path = tmp_path / "out" / f"model_{PERIOD - 1:07d}.pth"
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    saved = ckpt["trainer"]["hooks"]["EMAHook"]
    assert saved["updates"] == PERIOD
    expected = _closed_form(recorder.states[: PERIOD + 1], decays[:PERIOD])
    for k, v in expected.items():
        if v.is_floating_point():
            assert torch.allclose(saved["average"][k].double(), v, rtol=1e-5, atol=1e-6), k
    # The intermediate checkpoint keeps the trained weights, not the average.
    for k, v in recorder.states[PERIOD].items():
        assert torch.equal(ckpt["model"][k], v), k

    # A resumed trainer restores the average and its step count from that checkpoint.
    (tmp_path / "out" / "last_checkpoint").write_text(ckpt_path.name)
    resumed, _ = _trainer(tmp_path, "ema_resume2", **{"MODEL_EMA.RAMP_ITERS": ramp})
    resumed.resume_or_load(resume=True)
    hook = next(h for h in resumed._hooks if isinstance(h, EMAHook))
    assert hook.updates == PERIOD and resumed.start_iter == PERIOD
    for k, v in saved["average"].items():
        assert torch.equal(hook.average[k], v), k


def test_bad_decay():
    with pytest.raises(ValueError, match="MODEL_EMA.DECAY"):
        EMAHook(1.0)
    with pytest.raises(ValueError, match="RAMP_ITERS"):
        EMAHook(0.9, -1)
