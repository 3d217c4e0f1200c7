"""``codec tokenize`` and ``codec detokenize``: token shards for language models (:mod:`codec.tokens`).

Several processes or GPUs: ``accelerate launch -m codec.cli tokenize ...``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from codec.resolve import DEFAULT_MODEL, MODEL_HELP, load_codec


def _tokenize(args: argparse.Namespace) -> int:
    from codec.tokens.tokenize import tokenize

    model = load_codec(args.model)
    summary = tokenize(
        args.input, args.out_dir, model, args.model, args.kbps, args.batch_seconds, args.shard_minutes, args.workers
    )
    if summary is None:
        print("this process's files are done; the last process to finish writes the manifest and the summary")
        return 0
    print(summary.format())
    return 0 if summary.items else 1


def _detokenize(args: argparse.Namespace) -> int:
    from codec.tokens.store import read_info
    from codec.tokens.tokenize import current_processes, detokenize

    model = load_codec(args.model or read_info(Path(args.tokens_dir))["model"])
    model = model.to(current_processes().device)
    count = detokenize(args.tokens_dir, args.audio_dir, model, args.batch_seconds)
    print(f"wrote {count} WAV files at {model.sample_rate} Hz to {args.audio_dir}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``tokenize`` and ``detokenize`` to the ``codec`` command."""
    p = subparsers.add_parser(
        "tokenize",
        help="encode a folder or manifest of audio files to token shards for language models",
        description="Encode audio files to codes in safetensors shards with a JSONL manifest. Resumable: run the "
        "same command again after an interruption. Several processes: accelerate launch -m codec.cli tokenize ...",
    )
    p.add_argument("input", type=Path, help="folder of audio files (searched recursively) or JSONL manifest")
    p.add_argument("out_dir", type=Path, help="token directory to create or resume")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"{MODEL_HELP} (default: {DEFAULT_MODEL})")
    p.add_argument("--kbps", type=float, default=None, help="bitrate, choosing the codebooks kept (default: all)")
    p.add_argument("--batch-seconds", type=float, default=60.0, help="padded audio per batch (default 60)")
    p.add_argument("--shard-minutes", type=float, default=60.0, help="audio per shard (default 60)")
    p.add_argument("--workers", type=int, default=0, help="processes reading audio files (default 0)")
    p.set_defaults(func=_tokenize)

    p = subparsers.add_parser(
        "detokenize",
        help="decode a token directory back to WAV files",
        description="Decode the codes of a token directory to WAV files at the model rate, named after the manifest.",
    )
    p.add_argument("tokens_dir", type=Path, help="token directory written by `codec tokenize`")
    p.add_argument("audio_dir", type=Path, help="folder for the WAV files")
    p.add_argument("--model", default=None, help="model directory or bundled name (default: the one that tokenized)")
    p.add_argument("--batch-seconds", type=float, default=60.0, help="padded audio per batch (default 60)")
    p.set_defaults(func=_detokenize)
