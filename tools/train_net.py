#!/usr/bin/env python
"""Train and evaluate AInnoFace with Detectron2's DefaultTrainer.

    python tools/train_net.py --config-file configs/ainnoface_R152.yaml --num-gpus 8
    python tools/train_net.py --config-file configs/ainnoface_R152.yaml --eval-only \\
        MODEL.WEIGHTS output/ainnoface_R152/model_final.pth
    python tools/train_net.py --config-file configs/ainnoface_R152.yaml --eval-only \\
        --size-protocols original,vga,multiscale MODEL.WEIGHTS output/ainnoface_R152/model_final.pth

Everything is stock Detectron2 (DefaultTrainer, checkpointer, hooks, launch) except what
:class:`ainnoface_d2.engine.Trainer` adds: the data mapper (the paper's augmentation), the
evaluator (official WIDER FACE protocol) and the labelled test-size protocols.
"""

import sys

import ainnoface_d2  # noqa: F401  (compat shims + registration; must precede detectron2 imports)
from ainnoface_d2 import get_ainnoface_cfg
from ainnoface_d2.cli import run_cli
from ainnoface_d2.engine import Trainer, check_weights, load_for_eval, setup
from ainnoface_d2.size_protocol import SIZE_PROTOCOLS, parse_size_protocols

import detectron2.utils.comm as comm
from detectron2.engine import default_argument_parser, launch
from detectron2.evaluation import verify_results


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = load_for_eval(cfg, resume=args.resume)
        res = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, res)
        return res
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def get_parser():
    parser = default_argument_parser()
    parser.add_argument(
        "--size-protocols",
        type=parse_size_protocols,
        metavar="P[,P...]",
        help=f"test-size protocols to evaluate, from {','.join(SIZE_PROTOCOLS)}, each labelled "
        "in the results (sets TEST.FACE.SIZE_PROTOCOLS; default: the config's)",
    )
    return parser


def parse_args(argv=None):
    """The command line, with ``--size-protocols`` folded into the config options; exits with a
    one-line message when the weights to load are missing, before any process starts."""
    args = get_parser().parse_args(argv)
    if not args.config_file:
        sys.exit("--config-file is required, e.g. --config-file configs/ainnoface_R18_cpu.yaml")
    if args.size_protocols:
        args.opts = list(args.opts) + ["TEST.FACE.SIZE_PROTOCOLS", str(args.size_protocols)]
    try:
        check_weights(get_ainnoface_cfg(args.config_file, args.opts), resume=args.resume)
    except FileNotFoundError as e:
        sys.exit(f"train_net.py: error: {e}")
    return args


def invoke_main(argv=None):
    args = parse_args(argv)
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


if __name__ == "__main__":
    run_cli(invoke_main)
