#!/usr/bin/env python
"""Time the training step of ``tools/train_net.py`` as it runs: the Trainer, its data loader and
hooks, under each memory format and number of loader workers asked for.

    .venv/bin/python tools/benchmark_train_step.py --iters 150 --repeats 2

Each setting trains ``--iters`` steps of the config from scratch in a fresh process (without
evaluation or checkpoints) and reports the mean time per step after the first ``--skip`` steps;
settings alternate over ``--repeats`` rounds, so that a VM whose speed drifts is seen in every
setting alike. ``channels_last`` is what ``ainnoface_d2.engine.Trainer`` builds on a CPU;
``contiguous`` is Detectron2's plain ``build_model``. The data must exist (``make quickstart``
builds the built-in faces of the default config).
"""

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(REPO, "configs", "ainnoface_R18_cpu.yaml")


def time_steps(config_file, memory_format, workers, iters, skip, opts) -> float:
    """Seconds per step of ``iters`` training steps, after the first ``skip``."""
    sys.path.insert(0, REPO)
    import ainnoface_d2  # noqa: F401  (the Detectron2 shims first)
    from ainnoface_d2 import get_ainnoface_cfg
    from ainnoface_d2.engine import Trainer

    from detectron2.engine import HookBase
    from detectron2.modeling import build_model

    if memory_format == "contiguous":
        Trainer.build_model = classmethod(lambda cls, cfg: build_model(cfg))
    cfg = get_ainnoface_cfg(config_file, list(opts))
    cfg.merge_from_list(
        [
            "SOLVER.MAX_ITER",
            iters,
            "DATALOADER.NUM_WORKERS",
            workers,
            "DATASETS.TEST",
            (),
            "TEST.EVAL_PERIOD",
            0,
            "SOLVER.CHECKPOINT_PERIOD",
            10**9,
            "OUTPUT_DIR",
            os.path.join(REPO, "output", "benchmark_train_step"),
        ]
    )
    starts = {}

    class Clock(HookBase):
        def after_step(self):
            if self.trainer.iter + 1 == skip:
                starts["t"] = time.perf_counter()

    trainer = Trainer(cfg)
    trainer.register_hooks([Clock()])
    trainer.train()
    return (time.perf_counter() - starts["t"]) / (iters - skip)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config-file", default=DEFAULT_CONFIG)
    p.add_argument("--formats", default="contiguous,channels_last")
    p.add_argument("--workers", default="1,0", help="DATALOADER.NUM_WORKERS values")
    p.add_argument("--iters", type=int, default=150)
    p.add_argument("--skip", type=int, default=10, help="untimed first steps")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--one", nargs=2, metavar=("FORMAT", "WORKERS"), help=argparse.SUPPRESS)
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides")
    args = p.parse_args(argv)
    if args.iters <= args.skip:
        p.error("--iters must be larger than --skip")
    if args.one:
        fmt, workers = args.one
        sec = time_steps(args.config_file, fmt, int(workers), args.iters, args.skip, args.opts)
        print(json.dumps({"seconds_per_step": sec}))
        return
    settings = [(f, int(w)) for f in args.formats.split(",") for w in args.workers.split(",")]
    times = {s: [] for s in settings}
    for _ in range(args.repeats):
        for fmt, workers in settings:
            cmd = [
                sys.executable,
                os.path.abspath(__file__),
                "--config-file",
                args.config_file,
                "--iters",
                str(args.iters),
                "--skip",
                str(args.skip),
                "--one",
                fmt,
                str(workers),
            ] + list(args.opts)
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            times[(fmt, workers)].append(
                json.loads(out.strip().splitlines()[-1])["seconds_per_step"]
            )
    base = sum(times[settings[0]]) / len(times[settings[0]])
    head = ("memory format", "workers", "ms/step (each round)", "mean", "vs first")
    print(f"{head[0]:<15} {head[1]:>7} {head[2]:>28} {head[3]:>7} {head[4]:>8}")
    for (fmt, workers), ts in times.items():
        mean = sum(ts) / len(ts)
        each = " ".join(f"{1000 * t:.0f}" for t in ts)
        print(f"{fmt:<15} {workers:>7} {each:>28} {1000 * mean:>7.0f} {mean / base:>8.2f}")


if __name__ == "__main__":
    from ainnoface_d2.cli import run_cli

    run_cli(main)
