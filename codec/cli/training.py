"""The training commands, run from a checkout (:mod:`train` beside ``codec/``).

    codec train --config configs/speech16k.yaml [--run-dir DIR] [--resume] [--quiet] [KEY=VALUE ...]
    codec corpus --out ~/data/rvq [--work DIR]
    codec package RUN_DIR/model --name speech-16khz --data ~/data/rvq/train.jsonl [--files 400] [--seconds 4]
    codec bench-train [--steps 10] [--threads 2] [--batch-size 8] [--segment-s 1] [--critics]

``python -m train`` (also under ``accelerate launch``), ``python -m
train.corpus``, ``python -m train.package`` and ``python -m train.bench`` run
the same commands.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from codec.resolve import DEFAULT_MODEL


def _train(args: argparse.Namespace) -> int:
    import logging

    from codec.network.config import load_yaml, parse_overrides
    from train.config import TrainConfig
    from train.loop import train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = load_yaml(TrainConfig, args.config, parse_overrides(args.overrides))
    run_dir = args.run_dir or Path.home() / "runs" / args.config.stem
    exported = train(config, run_dir, resume=args.resume, quiet=args.quiet)
    print(f"generator exported to {exported}")
    return 0


def _corpus(args: argparse.Namespace) -> int:
    from train.corpus import build_corpus

    build_corpus(args.out, args.work)
    return 0


def _package(args: argparse.Namespace) -> int:
    import torch

    from codec.resolve import load_codec
    from train.package import package

    torch.set_num_threads(1)
    target = package(args.model_dir, args.name, args.data, args.files, args.seconds)
    print(f"bundled {args.name} ({load_codec(args.name).model_id}) in {target}")
    return 0


def _bench_train(args: argparse.Namespace) -> int:
    from train.bench import print_critic_costs, print_throughput

    if args.critics:
        print_critic_costs(args.threads, args.batch_size, args.segment_s)
    else:
        print_throughput(args.steps, args.threads, args.batch_size, args.segment_s)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``train``, ``corpus``, ``package`` and ``bench-train`` to the ``codec`` command."""
    p = subparsers.add_parser("train", help="train a codec from a YAML config")
    p.add_argument("--config", required=True, type=Path, help="YAML file, e.g. configs/speech16k.yaml")
    p.add_argument("--run-dir", type=Path, help="checkpoints, logs and the exported model (default ~/runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --run-dir")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. optim.lr=1e-3 steps=500")
    p.set_defaults(func=_train)

    p = subparsers.add_parser("corpus", help="build the real-speech corpora from Debian packages",
                              description="Build the real-speech corpus from Debian packages.")
    p.add_argument("--out", type=Path, required=True, help="output folder for WAVs and manifests")
    p.add_argument("--work", type=Path, help="download/extract folder (default: OUT-work)")
    p.set_defaults(func=_corpus)

    p = subparsers.add_parser("package", help="bundle a trained model with entropy tables fitted on training speech")
    p.add_argument("model_dir", type=Path, help="a directory written by save_pretrained (RUN_DIR/model)")
    p.add_argument("--name", default=DEFAULT_MODEL, help="the bundled model's name (default: %(default)s)")
    p.add_argument("--data", nargs="+", default=[str(Path.home() / "data/rvq/train.jsonl")],
                   help="training folders or manifests for the entropy tables (default: %(default)s)")
    p.add_argument("--files", type=int, default=400, help="files counted, spread over the data (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=4.0, help="seconds counted per file (default: %(default)s)")
    p.set_defaults(func=_package)

    p = subparsers.add_parser("bench-train", help="training throughput of the real loop, or each critic's CPU cost")
    p.add_argument("--steps", type=int, default=10, help="timed steps (fewer make the difference noisy)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--segment-s", type=float, default=1.0)
    p.add_argument("--critics", action="store_true", help="CPU cost of each critic and generator pass")
    p.set_defaults(func=_bench_train)
