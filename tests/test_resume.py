"""Resume: tools/train_net.py killed with SIGKILL after a checkpoint, then run with --resume.

The first run is killed as soon as its first periodic checkpoint is recorded in
``last_checkpoint``. Then (in this process) ``ainnoface_d2.engine.Trainer`` resumes from that
checkpoint: the model weights, the SGD momentum buffers and the LR scheduler must equal the
checkpoint's, and training must start at the next iteration. Finally the same command plus
``--resume`` runs to the end: it starts after the checkpoint, follows the LR schedule from there
and writes ``model_final.pth``.

The LR schedule is written out here from Detectron2's definition (``WarmupMultiStepLR``, linear
warm-up): ``lr(i) = BASE_LR * w(i) * GAMMA ** #{s in STEPS : s <= i}`` with
``w(i) = WARMUP_FACTOR * (1 - i / WARMUP_ITERS) + i / WARMUP_ITERS`` below ``WARMUP_ITERS``,
else 1. A scheduler that was not restored would start again from ``lr(0)``.
"""

import json
import os
import signal
import subprocess
import sys
import time

import ainnoface_d2  # noqa: F401
from ainnoface_d2 import get_ainnoface_cfg
from ainnoface_d2.engine import Trainer

import pytest
import torch
from _builtin_fixture import (
    REPO,
    SMALL_CONFIG,
    make_tiny_faces,
    register_tiny_faces,
    tiny_train_opts,
)

BASE_LR, GAMMA, WARMUP_ITERS, WARMUP_FACTOR = 0.02, 0.1, 5, 0.001
STEPS, MAX_ITER, CHECKPOINT_PERIOD = (15,), 30, 10


def expected_lr(i):
    w = 1.0
    if i < WARMUP_ITERS:
        alpha = i / WARMUP_ITERS
        w = WARMUP_FACTOR * (1 - alpha) + alpha
    return BASE_LR * w * GAMMA ** sum(s <= i for s in STEPS)


def _opts(prefix, out_dir):
    return tiny_train_opts(
        prefix,
        out_dir,
        **{
            # SGD: its momentum buffers are the optimizer state checked below.
            "SOLVER.OPTIMIZER": "SGD",
            "SOLVER.BASE_LR": BASE_LR,
            "SOLVER.GAMMA": GAMMA,
            "SOLVER.WARMUP_ITERS": WARMUP_ITERS,
            "SOLVER.WARMUP_FACTOR": WARMUP_FACTOR,
            "SOLVER.WARMUP_METHOD": "linear",
            "SOLVER.STEPS": str(STEPS),
            "SOLVER.MAX_ITER": MAX_ITER,
            "SOLVER.CHECKPOINT_PERIOD": CHECKPOINT_PERIOD,
            # The final evaluation is not what this test is about.
            "DATASETS.TEST": "()",
        },
    )


def _command(out_dir, resume):
    opts = _opts("builtin_faces", out_dir)
    cmd = [sys.executable, os.path.join(REPO, "tools", "train_net.py")]
    cmd += ["--config-file", SMALL_CONFIG] + (["--resume"] if resume else []) + opts
    return cmd


def _env(datasets_root):
    env = dict(os.environ, DETECTRON2_DATASETS=str(datasets_root), OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    return env


def _last_checkpoint(out_dir):
    path = out_dir / "last_checkpoint"
    return path.read_text().strip() if path.is_file() else None


def test_sigkill_then_resume(tmp_path):
    datasets_root = tmp_path / "datasets"
    make_tiny_faces(datasets_root / "builtin_faces")
    out_dir = tmp_path / "out"
    first_ckpt = f"model_{CHECKPOINT_PERIOD - 1:07d}.pth"

    # Run 1: kill it (SIGKILL, no chance to clean up) once its first checkpoint is recorded.
    with open(tmp_path / "run1.log", "w") as log:
        proc = subprocess.Popen(
            _command(out_dir, resume=False), env=_env(datasets_root), stdout=log, stderr=log
        )
        try:
            deadline = time.monotonic() + 120
            while _last_checkpoint(out_dir) != first_ckpt:
                if proc.poll() is not None:
                    pytest.fail(f"run 1 ended (rc {proc.returncode}) before {first_ckpt}:\n"
                                + (tmp_path / "run1.log").read_text()[-3000:])  # fmt: skip
                if time.monotonic() > deadline:
                    pytest.fail("run 1 wrote no checkpoint within 120 s")
                time.sleep(0.02)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out_dir / "model_final.pth").exists(), "run 1 finished before it was killed"

    # The checkpoint holds what a resume needs: Detectron2 stores the trainer's state (iteration,
    # LRScheduler hook, and under "_trainer" the optimizer) in "trainer".
    ckpt = torch.load(out_dir / first_ckpt, map_location="cpu", weights_only=False)
    assert ckpt["iteration"] == CHECKPOINT_PERIOD - 1
    assert ckpt["trainer"]["hooks"]["LRScheduler"]["last_epoch"] == CHECKPOINT_PERIOD
    assert "_trainer" in ckpt["trainer"], (
        "the checkpoint has no optimizer state: detectron2 v0.6's DefaultTrainer does not save "
        "its SimpleTrainer's state; ainnoface_d2.engine.Trainer must add it (state_dict / "
        "load_state_dict with a '_trainer' entry, as later Detectron2 does)"
    )
    saved_opt = ckpt["trainer"]["_trainer"]["optimizer"]
    momenta = [st["momentum_buffer"] for st in saved_opt["state"].values()]
    assert momenta and sum(float(m.abs().sum()) > 0 for m in momenta) > len(momenta) // 2

    # Resume in this process and compare the restored state with the checkpoint.
    register_tiny_faces("resume_test_faces", datasets_root / "builtin_faces")
    cfg = get_ainnoface_cfg(SMALL_CONFIG, _opts("resume_test_faces", out_dir))
    cfg.freeze()
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=True)
    assert trainer.start_iter == CHECKPOINT_PERIOD
    assert trainer.scheduler.last_epoch == CHECKPOINT_PERIOD
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, ckpt["model"][k]), k
    restored = trainer.optimizer.state_dict()
    assert restored["state"].keys() == saved_opt["state"].keys()
    for i, st in saved_opt["state"].items():
        assert torch.equal(restored["state"][i]["momentum_buffer"], st["momentum_buffer"]), i
    del trainer

    # Run 2: the same command with --resume.
    res = subprocess.run(
        _command(out_dir, resume=True),
        env=_env(datasets_root),
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-5000:]
    assert (out_dir / "model_final.pth").is_file()
    assert f"Starting training from iteration {CHECKPOINT_PERIOD}" in log, log[-3000:]
    assert f"Loading trainer from {out_dir / first_ckpt}" in log, log[-3000:]

    final = torch.load(out_dir / "model_final.pth", map_location="cpu", weights_only=False)
    assert final["iteration"] == MAX_ITER - 1
    assert final["trainer"]["hooks"]["LRScheduler"]["last_epoch"] == MAX_ITER

    # metrics.json: run 2's records start after the checkpoint and follow the LR schedule.
    with open(out_dir / "metrics.json") as f:
        records = [json.loads(line) for line in f if line.strip()]
    resumed = [r for r in records if r["iteration"] >= CHECKPOINT_PERIOD]
    assert [r["iteration"] for r in resumed][-1] == MAX_ITER - 1
    assert len(resumed) >= 2
    for r in resumed:
        assert r["lr"] == pytest.approx(expected_lr(r["iteration"]), rel=1e-6), r


def test_resume_refuses_a_checkpoint_of_another_model(tmp_path):
    """``--resume`` with a last checkpoint of another model (another config, or an earlier version
    of this one) stops with the file and what differs, instead of loading what fits and training
    on from the saved iteration; the same model, also saved from DDP (``module.`` keys), resumes."""
    from ainnoface_d2.engine import load_for_eval

    from detectron2.checkpoint import DetectionCheckpointer

    register_tiny_faces("refuse_faces", make_tiny_faces(tmp_path / "builtin_faces"))
    out_dir = tmp_path / "out"
    cfg = get_ainnoface_cfg(SMALL_CONFIG, _opts("refuse_faces", out_dir))
    cfg.freeze()
    trainer = Trainer(cfg)
    state = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert "backbone.c6.weight" in state and "head.cls_score.bias" in state

    trainer.iter = 9
    trainer_state = trainer.state_dict()  # what Detectron2's checkpointer saves beside the model
    trainer.iter = 0

    def save(model_state):
        out_dir.mkdir(exist_ok=True)
        ckpt = {"model": model_state, "trainer": trainer_state, "iteration": 9}
        torch.save(ckpt, out_dir / "model_x.pth")
        (out_dir / "last_checkpoint").write_text("model_x.pth")
        return str(out_dir / "model_x.pth")

    # One name missing, one unknown, one shape changed: each named in the error with the file.
    other = dict(state)
    del other["head.cls_score.bias"]
    other["head.extra.weight"] = torch.zeros(3)
    other["backbone.c6.weight"] = torch.zeros(7, *state["backbone.c6.weight"].shape[1:])
    path = save(other)
    with pytest.raises(ValueError) as err:
        trainer.resume_or_load(resume=True)
    message = str(err.value)
    assert path in message
    assert "missing from it (1): head.cls_score.bias" in message
    assert "not in the model (1): head.extra.weight" in message
    c6 = tuple(state["backbone.c6.weight"].shape)
    assert f"backbone.c6.weight {(7, *c6[1:])} instead of {c6}" in message
    with pytest.raises(ValueError, match="cannot resume from"):
        load_for_eval(cfg, resume=True)  # --eval-only --resume

    # A run of the config without the RFE block: 56 RFE tensors missing, two reshaped.
    no_rfe = get_ainnoface_cfg(SMALL_CONFIG, _opts("refuse_faces", out_dir))
    no_rfe.merge_from_list(["MODEL.AINNOFACE.USE_RFE", "False"])
    DetectionCheckpointer(Trainer.build_model(no_rfe), save_dir=str(out_dir)).save("model_0000009")
    with pytest.raises(ValueError, match=r"model_0000009\.pth.*\n.*missing from it \(56\)"):
        trainer.resume_or_load(resume=True)
    assert trainer.start_iter == 0

    # The same model saved by a DDP-wrapped run: resumed from the next iteration.
    ddp = {"module." + k: v + 1 if v.is_floating_point() else v for k, v in state.items()}
    save(ddp)
    trainer.resume_or_load(resume=True)
    assert trainer.start_iter == 10
    weights = trainer.model.state_dict()
    assert torch.equal(weights["backbone.c6.weight"], state["backbone.c6.weight"] + 1)
