"""The ``codec`` command line.

Each feature module contributes its sub-commands through a function
``register(subparsers)`` that adds parsers whose ``func`` default takes the
parsed arguments and returns an exit code. User errors (:class:`CodecError`)
and operating-system errors (a full disk, a missing permission) print one
line and exit with status 2, never a traceback. SIGTERM unwinds like Ctrl-C,
so temporary files are removed (exit status 143); a closed pipe on standard
output (``codec decompress x.rvq - | head -c1``) ends quietly with status 141,
as a process killed by SIGPIPE would.

Only the library is installed; ``train`` and ``eval`` live beside ``codec/``
in a checkout of the repository, where this module finds them (so
``codec train`` and ``codec eval`` exist only when run from a checkout).

Only the module of the command being run is imported: ``codec --help`` lists
the commands from :data:`COMMANDS`, and ``codec info`` or ``codec truncate``
(plain bytes) start without importing torch.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
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
    "compress": ("codec.fileformat.compress", "compress an audio file"),
    "decompress": ("codec.fileformat.compress", "decompress to an audio file"),
    "info": ("codec.fileformat.compress", "describe a compressed file and measure its bitrate"),
    "truncate": ("codec.fileformat.compress", "lower a compressed file's bitrate without re-encoding"),
    "tokenize": ("codec.tokens.tokenize", "encode a folder or manifest of audio files to token shards for language models"),
    "detokenize": ("codec.tokens.tokenize", "decode a token directory back to WAV files"),
    "train": ("train.cli", "train a codec from a YAML config"),
    "eval": ("eval.cli", "score a model against Opus/codec2/GSM/Speex with ViSQOL, PESQ, STOI, SI-SDR, mel, DNSMOS"),
    "phonetic": ("eval.phonetic", "phone purity, PNMI and a speaker probe of each codebook"),
    "codebooks": ("eval.codebooks", "usage, entropy and dead codes of each codebook on a dataset"),
    "export": ("codec.export", "export the encoder and decoder to ONNX and TorchScript and check them against PyTorch"),
    "precision": ("codec.export", "compare float16 and bfloat16 inference with float32 on a long recording"),
}
#: Modules that contribute sub-commands.
COMMAND_MODULES = tuple(dict.fromkeys(module for module, _ in COMMANDS.values()))


def _installed(module: str) -> bool:
    """Whether ``module`` is part of this installation (found without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


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
    for name, (module, help_text) in COMMANDS.items():
        installed = _installed(module)
        if module == full and installed:
            importlib.import_module(module).register(subparsers)
            full = None
        if name not in subparsers.choices and installed:
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
        with _sigterm_unwinds():
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


if __name__ == "__main__":
    sys.exit(main())
