"""Exponential moving average of the model's weights (``MODEL_EMA``), as a Detectron2 hook.

With ``MODEL_EMA.ENABLED`` the trainer keeps, beside the weights it trains, their running average

    ema <- d_t * ema + (1 - d_t) * weights,   d_t = DECAY * (1 - exp(-t / RAMP_ITERS))

after every step t (t counts the updates, from 1), over every floating-point entry of the model's
``state_dict`` (parameters and BatchNorm statistics; integer buffers are copied). The ramp lets the
average follow the fast early changes instead of remembering the random initialisation.

At the last iteration the average replaces the trained weights, so ``model_final.pth``, the final
evaluation and everything that loads the checkpoint (``FaceDetector``, the demo, the export) use it.
Periodic evaluations during training (``TEST.EVAL_PERIOD``) see the trained weights. The average is
part of every checkpoint (the hook's ``state_dict``), so ``--resume`` continues it.
"""

import math

import torch
from detectron2.engine import HookBase
from torch.nn.parallel import DistributedDataParallel

__all__ = ["EMAHook"]


class EMAHook(HookBase):
    def __init__(self, decay: float, ramp_iters: float = 0.0):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"MODEL_EMA.DECAY must be in (0, 1), got {decay}")
        if ramp_iters < 0:
            raise ValueError(f"MODEL_EMA.RAMP_ITERS must be >= 0, got {ramp_iters}")
        self.decay = float(decay)
        self.ramp_iters = float(ramp_iters)
        self.updates = 0
        self.average = None  # {name: tensor}, the model's state_dict entries

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg.MODEL_EMA.DECAY, cfg.MODEL_EMA.RAMP_ITERS)

    def _model(self):
        model = self.trainer.model
        return model.module if isinstance(model, DistributedDataParallel) else model

    def decay_at(self, updates: int) -> float:
        """``d_t`` for the ``updates``-th update."""
        if self.ramp_iters == 0:
            return self.decay
        return self.decay * (1.0 - math.exp(-updates / self.ramp_iters))

    def before_train(self):
        if self.average is None:  # not restored from a checkpoint
            state = self._model().state_dict()
            self.average = {k: v.detach().clone() for k, v in state.items()}

    @torch.no_grad()
    def update(self, state: dict):
        """One averaging step towards ``state`` (a ``state_dict`` with the average's keys)."""
        self.updates += 1
        d = self.decay_at(self.updates)
        averaged = [k for k, v in self.average.items() if v.is_floating_point()]
        torch._foreach_mul_([self.average[k] for k in averaged], d)
        torch._foreach_add_(
            [self.average[k] for k in averaged],
            [state[k].detach().to(self.average[k].dtype) for k in averaged],
            alpha=1.0 - d,
        )
        for k, v in self.average.items():
            if not v.is_floating_point():
                v.copy_(state[k])

    def after_step(self):
        model = self._model()
        self.update(model.state_dict())
        if self.trainer.iter >= self.trainer.max_iter - 1:
            model.load_state_dict(self.average)

    def state_dict(self):
        return {"average": self.average, "updates": self.updates}

    def load_state_dict(self, state_dict):
        self.average = {k: v.clone() for k, v in state_dict["average"].items()}
        self.updates = int(state_dict["updates"])
