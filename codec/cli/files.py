"""``codec compress``, ``decompress``, ``info`` and ``truncate``: the ``.rvq`` file commands.

    codec compress IN OUT [--kbps K] [--model M] [--no-entropy] [--quiet]
    codec decompress IN OUT [--model M] [--quiet]
    codec info FILE
    codec truncate IN OUT --kbps K

``-`` stands for stdin or stdout. The work is done by
:mod:`codec.fileformat.compress`, which imports torch only where it runs the
model: ``info`` and ``truncate`` read and copy bytes and start without it.
"""

from __future__ import annotations

import argparse

from codec.fileformat.compress import compress, decompress, format_info, load_for_coding, read_info, truncate
from codec.resolve import DEFAULT_MODEL


def _compress(args: argparse.Namespace) -> int:
    compress(args.input, args.output, load_for_coding(args.model), args.kbps, not args.no_entropy, not args.quiet)
    return 0


def _decompress(args: argparse.Namespace) -> int:
    decompress(args.input, args.output, args.model, not args.quiet)
    return 0


def _info(args: argparse.Namespace) -> int:
    print(format_info(read_info(args.file)))
    return 0


def _truncate(args: argparse.Namespace) -> int:
    truncate(args.input, args.output, args.kbps)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``compress``, ``decompress``, ``info`` and ``truncate`` to the ``codec`` command."""
    model_help = f"model directory (Codec.save_pretrained) or bundled name (default: {DEFAULT_MODEL})"
    p = subparsers.add_parser("compress", help="compress an audio file")
    p.add_argument("input", help="audio file (wav, flac, ogg, ...; any rate and channel count) or - for stdin")
    p.add_argument("output", help="compressed file, or - for stdout")
    p.add_argument("--kbps", type=float, default=None, help="bitrate per channel (default: the highest)")
    p.add_argument("--model", default=None, help=model_help)
    p.add_argument("--no-entropy", action="store_true", help="bit-pack the codes instead of entropy coding them")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_compress)

    p = subparsers.add_parser("decompress", help="decompress to an audio file")
    p.add_argument("input", help="compressed file, or - for stdin")
    p.add_argument("output", help="audio file (.wav or .flac), or - for WAV on stdout")
    p.add_argument("--model", default=None, help="model directory or bundled name (default: the file's model)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_decompress)

    p = subparsers.add_parser("info", help="describe a compressed file and measure its bitrate")
    p.add_argument("file", help="compressed file, or - for stdin")
    p.set_defaults(func=_info)

    p = subparsers.add_parser("truncate", help="lower a compressed file's bitrate without re-encoding")
    p.add_argument("input", help="compressed file, or - for stdin")
    p.add_argument("output", help="smaller compressed file, or - for stdout")
    p.add_argument("--kbps", type=float, required=True, help="new bitrate per channel")
    p.set_defaults(func=_truncate)
