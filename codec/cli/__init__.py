"""The ``codec`` command line: every sub-command's arguments, in one place.

The sub-commands are grouped by what they work on, one module each:
:mod:`codec.cli.files` (``compress``, ``decompress``, ``info``,
``truncate``), :mod:`codec.cli.tokens` (``tokenize``, ``detokenize``),
:mod:`codec.cli.export` (``export``, ``precision``),
:mod:`codec.cli.training` (``train``, ``corpus``, ``package``,
``bench-train``) and :mod:`codec.cli.evaluation` (``eval``, ``codebooks``,
``phonetic``, ``voices``, ``bench``, ``bench-bitstream``, ``demo``, ``recipes``). Each
module's ``register(subparsers)`` adds parsers whose ``func`` default takes
the parsed arguments, calls library functions with plain arguments and
returns an exit code; no library module imports this package. The ``python
-m`` entry points of ``train`` and ``eval`` (``python -m train``, ``python -m
eval.demo``, ...) call :func:`run_module`, so their arguments are these.

User errors (:class:`CodecError`) and operating-system errors (a full disk, a
missing permission) print one line and exit with status 2, never a
traceback; warnings print one line each (``codec decompress: warning:
...``). SIGTERM unwinds like Ctrl-C, so temporary files are removed (exit
status 143); a closed pipe on standard output (``codec decompress x.rvq - |
head -c1``) ends quietly with status 141, as a process killed by SIGPIPE
would.

Only the library is installed; ``train`` and ``eval`` live beside ``codec/``
in a checkout of the repository, where this module finds them (so the
training and evaluation commands exist only when run from a checkout).

Only the module of the command being run is imported: ``codec --help`` lists
the commands from :data:`COMMANDS`, and ``codec info`` or ``codec truncate``
(plain bytes) start without importing torch.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

from codec.errors import CodecError

#: Each sub-command, in help order: the module that registers it and its one-line help
#: (tests check both against what the modules register).
COMMANDS: dict[str, tuple[str, str]] = {
    "compress": ("codec.cli.files", "compress an audio file"),
    "decompress": ("codec.cli.files", "decompress to an audio file"),
    "info": ("codec.cli.files", "describe a compressed file and measure its bitrate"),
    "truncate": ("codec.cli.files", "lower a compressed file's bitrate without re-encoding"),
    "tokenize": ("codec.cli.tokens", "encode a folder or manifest of audio files to token shards for language models"),
    "detokenize": ("codec.cli.tokens", "decode a token directory back to WAV files"),
    "export": ("codec.cli.export", "export the encoder and decoder to ONNX and TorchScript and check them against PyTorch"),
    "precision": ("codec.cli.export", "compare float16 and bfloat16 inference with float32 on a long recording"),
    "train": ("codec.cli.training", "train a codec from a YAML config"),
    "corpus": ("codec.cli.training", "build the real-speech corpora from Debian packages"),
    "package": ("codec.cli.training", "bundle a trained model with entropy tables fitted on training speech"),
    "bench-train": ("codec.cli.training", "training throughput of the real loop, or each critic's CPU cost"),
    "eval": ("codec.cli.evaluation", "score a model against Opus/codec2/GSM/Speex with ViSQOL, PESQ, STOI, SI-SDR, mel, DNSMOS"),
    "codebooks": ("codec.cli.evaluation", "usage, entropy and dead codes of each codebook on a dataset"),
    "phonetic": ("codec.cli.evaluation", "phone purity, PNMI and a speaker probe of each codebook"),
    "voices": ("codec.cli.evaluation", "the same sentences in several festival voices, for the speaker probe"),
    "bench": ("codec.cli.evaluation", "speed, streaming latency, start-up and memory, beside libopus and the 24 kHz preset"),
    "bench-bitstream": ("codec.cli.evaluation", "measured bitrate, coding speed and memory of the file format"),
    "demo": ("codec.cli.evaluation", "compress and decompress real speech next to Opus, with a listening page"),
    "recipes": ("codec.cli.evaluation", "score the CPU-time snapshots of training runs and compare recipes"),
    "phase-recovery": ("codec.cli.evaluation", "speech rendered from its true magnitudes with recovered phases"),
    "pitch-probe": ("codec.cli.evaluation", "how precisely a model's codes carry pitch, read by a small probe"),
    "decompose": ("codec.cli.evaluation", "what holds decoded speech down: its magnitudes, phases or pitch"),
}
#: Modules that contribute sub-commands.
COMMAND_MODULES = tuple(dict.fromkeys(module for module, _ in COMMANDS.values()))
#: Command modules whose commands need a package of the checkout (:data:`CHECKOUT_PACKAGES`).
NEEDS_CHECKOUT = {"codec.cli.training": "train", "codec.cli.evaluation": "eval"}


#: Packages of a checkout that are not installed: they are imported from the folder that holds ``codec/``.
CHECKOUT_PACKAGES = ("train", "eval")


def checkout_root() -> Path | None:
    """The checkout that holds this ``codec/`` with :data:`CHECKOUT_PACKAGES` beside it, or None (installed)."""
    root = Path(__file__).resolve().parents[2]
    return root if all((root / name / "__init__.py").is_file() for name in CHECKOUT_PACKAGES) else None


def use_checkout_packages() -> None:
    """Puts the checkout, when there is one, first on the import path, so that ``train`` and ``eval`` import."""
    root = checkout_root()
    if root is not None and str(root) not in sys.path:
        sys.path.insert(0, str(root))


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser: every installed sub-command, fully defined for ``command`` only.

    Args:
        command: The sub-command to run; its module is imported and registers
            its arguments. The others appear by name and help alone.
    """
    use_checkout_packages()
    parser = argparse.ArgumentParser(prog="codec", description="rvq-codec: neural audio compression and tokens")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    full = COMMANDS[command][0] if command in COMMANDS else None
    in_checkout = checkout_root() is not None
    for name, (module, help_text) in COMMANDS.items():
        available = in_checkout or module not in NEEDS_CHECKOUT
        if module == full and available:
            importlib.import_module(module).register(subparsers)
            full = None
        if name not in subparsers.choices and available:
            subparsers.add_parser(name, help=help_text)
    return parser


#: Exit statuses of a process ended by SIGTERM and by SIGPIPE (128 + signal number).
EXIT_TERMINATED = 128 + signal.SIGTERM
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM, so that ``finally`` blocks remove temporary files."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Turns SIGTERM into :class:`Terminated` while the block runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _warnings_as_lines(command: str) -> Iterator[None]:
    """Prints each warning as one line, ``codec COMMAND: warning: ...``, instead of Python's file, line and source."""
    import warnings

    def show(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> None:
        print(f"codec {command}: warning: {message}", file=sys.stderr)

    shown = warnings.showwarning
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


def _silence_stdout() -> None:
    """Points standard output at /dev/null so the interpreter's final flush does not fail again."""
    with contextlib.suppress(OSError, AttributeError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _command(argv: list[str]) -> str | None:
    """The sub-command named in ``argv`` (the top-level parser takes no other positional argument)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(_command(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with _sigterm_unwinds(), _warnings_as_lines(args.command):
            return int(args.func(args) or 0)
    except CodecError as e:
        print(f"codec {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        print(f"codec {args.command}: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"codec {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"codec {args.command}: terminated", file=sys.stderr)
        return EXIT_TERMINATED


def run_module(command: str) -> NoReturn:
    """``python -m <module>`` of a command module: the same as ``codec <command> ...``."""
    sys.exit(main([command, *sys.argv[1:]]))
