"""Multi-process training: two CPU processes (gloo) train with ainnoface_d2.engine's Trainer.

Detectron2 v0.6's ``launch`` only knows NCCL, so the workers set up the process group the way
``detectron2.engine.launch._distributed_worker`` does (``init_process_group``, then the
per-machine ``comm._LOCAL_PROCESS_GROUP``, then ``comm.synchronize``), with backend "gloo".

Checked:
* the two ranks start from different random weights (Detectron2 seeds ``SEED + rank``) and see
  different images, yet every parameter and buffer is bit-identical on both ranks after training:
  DistributedDataParallel broadcast the initial weights and averaged every gradient;
* the final evaluation (Detectron2's ``EvalHook`` after the last iteration) shards the val images
  over the ranks, and the WIDER FACE evaluator gathers both shards on rank 0: its AP and its
  per-image predictions equal those of one process evaluating the same weights on all images.
"""

import json
import os
import socket

import ainnoface_d2  # noqa: F401
from ainnoface_d2 import engine, get_ainnoface_cfg
from ainnoface_d2.evaluation import read_submission_dir

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from _builtin_fixture import (
    SMALL_CONFIG,
    make_tiny_faces,
    register_tiny_faces,
    tiny_train_opts,
)
from scipy.optimize import linear_sum_assignment

WORLD_SIZE = 2
PREFIX = "dist_test_faces"


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world_size, dist_url, data_root, output_dir, opts):
    import torch.distributed as dist
    from detectron2.utils import comm

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=dist_url, world_size=world_size, rank=rank)
    # One machine: the local group is every rank (as launch does for num_machines == 1).
    assert comm._LOCAL_PROCESS_GROUP is None
    comm._LOCAL_PROCESS_GROUP = dist.new_group(list(range(world_size)))
    comm.synchronize()
    try:
        register_tiny_faces(PREFIX, data_root)
        # ainnoface_d2.compat makes detectron2's create_ddp_model accept CPU models
        from detectron2.engine import defaults

        assert defaults.create_ddp_model._handles_cpu
        from detectron2.engine import default_argument_parser

        args = default_argument_parser().parse_args(["--config-file", SMALL_CONFIG, *opts])
        cfg = engine.setup(args)

        class RecordingTrainer(engine.Trainer):
            @classmethod
            def build_model(cls, cfg):
                model = super().build_model(cfg)
                # The weights this rank initialised, before DDP broadcasts rank 0's.
                cls.initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
                return model

        trainer = RecordingTrainer(cfg)
        model = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
        trainer.resume_or_load(resume=False)
        trainer.train()
        # Set by DefaultTrainer's EvalHook, which evaluates after the last iteration.
        results = trainer._last_eval_results
        torch.save(
            {
                "initial": RecordingTrainer.initial,
                "final": {k: v.detach().clone() for k, v in model.state_dict().items()},
                "results": results,
                "iter": trainer.iter,
                "ddp": type(trainer.model).__name__,
            },
            os.path.join(output_dir, f"rank{rank}.pth"),
        )
        comm.synchronize()
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_tiny_faces(tmp_path_factory.mktemp("tiny_faces"))


def test_two_process_training_and_gathered_evaluation(data_root, tmp_path):
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.evaluation import inference_on_dataset
    from detectron2.modeling import build_model

    out_dir = tmp_path / "train"
    out_dir.mkdir()
    max_iter = 6
    overrides = {
        # GroupNorm: BatchNorm's running statistics are per rank under DDP
        # (create_ddp_model(broadcast_buffers=False)); with GN every tensor is synchronised.
        "MODEL.RESNETS.NORM": "GN",
        # Every candidate counts (no score threshold, up to 1000 per image), so that a barely
        # trained model still has detections that overlap faces and a non-trivial AP to compare.
        "MODEL.AINNOFACE.SCORE_THRESH_TEST": 0.0,
        "TEST.DETECTIONS_PER_IMAGE": 1000,
        "SOLVER.MAX_ITER": max_iter,
        "SOLVER.STEPS": "(4,)",
        "SOLVER.IMS_PER_BATCH": 2 * WORLD_SIZE,
        "TEST.WIDER_FACE.WRITE_SUBMISSION": True,
    }
    opts = tiny_train_opts(PREFIX, out_dir, **overrides)
    mp.spawn(
        _worker,
        nprocs=WORLD_SIZE,
        args=(WORLD_SIZE, f"tcp://127.0.0.1:{_free_port()}", data_root, str(out_dir), opts),
        daemon=False,
    )

    ranks = [torch.load(out_dir / f"rank{r}.pth", weights_only=False) for r in range(WORLD_SIZE)]
    assert [r["ddp"] for r in ranks] == ["DistributedDataParallel"] * WORLD_SIZE
    assert [r["iter"] for r in ranks] == [max_iter] * WORLD_SIZE

    # Different seeds per rank -> different initial weights; DDP makes them equal.
    init0, init1 = ranks[0]["initial"], ranks[1]["initial"]
    assert any(not torch.equal(init0[k], init1[k]) for k in init0), "ranks started identical"
    final0, final1 = ranks[0]["final"], ranks[1]["final"]
    assert final0.keys() == final1.keys()
    for k in final0:
        assert torch.equal(final0[k], final1[k]), f"{k} differs between ranks after training"
    # ... and training moved them away from rank 0's (broadcast) initial weights.
    moved = [k for k in init0 if not torch.equal(init0[k], final0[k])]
    assert len(moved) > len(init0) // 2

    with open(out_dir / "metrics.json") as f:
        iters = [json.loads(line) for line in f if line.strip()]
    losses = [m["total_loss"] for m in iters if "total_loss" in m]
    assert losses and all(np.isfinite(losses))

    # Distributed evaluation: only rank 0 returns the metrics.
    dist_ap = ranks[0]["results"]["wider_face"]
    assert ranks[1]["results"] == {}
    dist_pred = read_submission_dir(
        out_dir / "inference" / f"{PREFIX}_val" / "wider_face_submission"
    )

    # One process, same weights (rank 0's checkpoint), every val image.
    register_tiny_faces(PREFIX, data_root)
    cfg = get_ainnoface_cfg(SMALL_CONFIG, tiny_train_opts(PREFIX, tmp_path / "single", **overrides))
    cfg.freeze()
    model = build_model(cfg)
    DetectionCheckpointer(model).load(str(out_dir / "model_final.pth"))
    for k, v in model.state_dict().items():
        assert torch.equal(v, final0[k]), k
    dataset = f"{PREFIX}_val"
    single_dir = tmp_path / "single_eval"
    evaluator = engine.Trainer.build_evaluator(cfg, dataset, output_folder=str(single_dir))
    single_ap = inference_on_dataset(
        model, engine.Trainer.build_test_loader(cfg, dataset), evaluator
    )["wider_face"]
    single_pred = read_submission_dir(single_dir / "wider_face_submission")

    # All 4 val images came back from the two ranks, with the same detections (one to one; two
    # detections whose scores differ by float noise may be listed in either order).
    assert len(dist_pred) == 4 and dist_pred.keys() == single_pred.keys()
    for key in single_pred:
        dist_rows, single_rows = dist_pred[key], single_pred[key]
        assert dist_rows.shape == single_rows.shape, key
        gap = np.abs(dist_rows[:, None, :] - single_rows[None, :, :]).max(axis=2)
        rows, cols = linear_sum_assignment(gap)
        assert gap[rows, cols].max(initial=0.0) <= 1e-3, key
    assert sum(len(p) for p in single_pred.values()) > 0
    assert dist_ap.keys() == single_ap.keys() == {"AP_easy", "AP_medium", "AP_hard"}
    for k in single_ap:
        assert dist_ap[k] == pytest.approx(single_ap[k], abs=1e-9)
    assert max(single_ap.values()) > 0, single_ap
