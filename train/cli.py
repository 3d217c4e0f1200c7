"""``codec train``: train a codec from a YAML config (also ``python -m train`` / ``accelerate launch -m train``)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from codec.network.config import load_yaml, parse_overrides
from train.config import TrainConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``codec train``."""
    parser.add_argument("--config", required=True, type=Path, help="YAML file, e.g. configs/speech16k.yaml")
    parser.add_argument("--run-dir", type=Path, help="checkpoints, logs and the exported model (default ~/runs/<config name>)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --run-dir")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. optim.lr=1e-3 steps=500")


def run(args: argparse.Namespace) -> int:
    """Loads the config and trains."""
    from train.loop import train  # heavy imports only when training

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = load_yaml(TrainConfig, args.config, parse_overrides(args.overrides))
    run_dir = args.run_dir or Path.home() / "runs" / args.config.stem
    exported = train(config, run_dir, resume=args.resume, quiet=args.quiet)
    print(f"generator exported to {exported}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``codec train``."""
    parser = subparsers.add_parser("train", help="train a codec from a YAML config")
    add_arguments(parser)
    parser.set_defaults(func=run)
