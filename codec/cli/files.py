"""``codec compress``, ``decompress``, ``info`` and ``truncate``: the ``.rvq`` file commands.

    codec compress IN OUT [--kbps K] [--model M] [--no-entropy] [--threads N] [--quiet]
    codec decompress IN OUT [--model M] [--threads N] [--quiet]
    codec info FILE
    codec truncate IN OUT --kbps K

``-`` stands for stdin or stdout. The work is done by
:mod:`codec.fileformat.compress`, which imports torch only where it runs the
model: ``info`` and ``truncate`` read and copy bytes and start without it,
and ``decompress`` decodes without it once the decoder of the file's model
and bitrate is cached for onnxruntime (:mod:`codec.fileformat.onnx_decode`;
the first file of each writes the cache).

``compress`` and ``decompress`` run on one torch thread unless ``--threads``
asks for more. Their matrix products cover a second or a few of audio,
too small to gain much from a second thread (a minute of speech compressed
in 1.0-1.1 s on two threads against 1.1-1.7 s on one, decompressed in
0.46-0.67 s against 0.63-0.67 s, on an idle 2-core machine), and when
another process holds a core, torch's threads wait on each other: with a
training run on the other core, 10 s compressed in 2.65 s on two threads
against 0.42 s on one. Both keep freed memory for the next call instead of
faulting it in again (:mod:`codec.allocator`).
"""

from __future__ import annotations

import argparse

from codec.fileformat.compress import compress, decompress, format_info, load_for_coding, read_info, truncate
from codec.resolve import DEFAULT_MODEL

#: Threads (torch's or onnxruntime's) of ``compress`` and ``decompress`` unless ``--threads`` says otherwise.
DEFAULT_THREADS = 1


def threads_arg(text: str) -> int:
    """``--threads``: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of threads of at least 1, got {text!r}")
    return value


def _use_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _compress(args: argparse.Namespace) -> int:
    from codec.allocator import keep_freed_memory

    _use_threads(args.threads)
    loaded = load_for_coding(args.model)
    keep_freed_memory()  # after loading: the load's own garbage goes back to the system (peak RSS as before)
    compress(args.input, args.output, loaded, args.kbps, not args.no_entropy, not args.quiet)
    return 0


def _decompress(args: argparse.Namespace) -> int:
    from codec.allocator import keep_freed_memory

    keep_freed_memory()  # the model comes from the file's header, loaded inside decompress
    decompress(args.input, args.output, args.model, not args.quiet, threads=args.threads)
    return 0


def _info(args: argparse.Namespace) -> int:
    print(format_info(read_info(args.file)))
    return 0


def _truncate(args: argparse.Namespace) -> int:
    truncate(args.input, args.output, args.kbps)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``compress``, ``decompress``, ``info`` and ``truncate`` to the ``codec`` command."""
    threads_help = f"threads of torch or onnxruntime (default {DEFAULT_THREADS}: see codec.cli.files)"
    model_help = f"model directory (Codec.save_pretrained) or bundled name (default: {DEFAULT_MODEL})"
    p = subparsers.add_parser("compress", help="compress an audio file")
    p.add_argument("input", help="audio file (wav, flac, ogg, ...; any rate and channel count) or - for stdin")
    p.add_argument("output", help="compressed file, or - for stdout")
    p.add_argument("--kbps", type=float, default=None, help="bitrate per channel (default: the highest)")
    p.add_argument("--model", default=None, help=model_help)
    p.add_argument("--no-entropy", action="store_true", help="bit-pack the codes instead of entropy coding them")
    p.add_argument("--threads", type=threads_arg, default=DEFAULT_THREADS, help=threads_help)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_compress)

    p = subparsers.add_parser("decompress", help="decompress to an audio file")
    p.add_argument("input", help="compressed file, or - for stdin")
    p.add_argument("output", help="audio file (.wav or .flac), or - for WAV on stdout")
    p.add_argument("--model", default=None, help="model directory or bundled name (default: the file's model)")
    p.add_argument("--threads", type=threads_arg, default=DEFAULT_THREADS, help=threads_help)
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
