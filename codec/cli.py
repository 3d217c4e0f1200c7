"""The ``codec`` command line.

Each feature module contributes its sub-commands through a function
``register(subparsers)`` that adds parsers whose ``func`` default takes the
parsed arguments and returns an exit code. User errors (:class:`CodecError`)
print one line and exit with status 2, never a traceback.

Only the module of the command being run is imported: ``codec --help`` lists
the commands from :data:`COMMANDS`, and ``codec info`` or ``codec truncate``
(plain bytes) start without importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from typing import NoReturn

from codec.errors import CodecError

#: Each sub-command, in help order: the module that registers it and its one-line help
#: (tests check both against what the modules register).
COMMANDS: dict[str, tuple[str, str]] = {
    "compress": ("codec.compress", "compress an audio file"),
    "decompress": ("codec.compress", "decompress to an audio file"),
    "info": ("codec.compress", "describe a compressed file and measure its bitrate"),
    "truncate": ("codec.compress", "lower a compressed file's bitrate without re-encoding"),
    "tokenize": ("codec.tokens", "encode a folder or manifest of audio files to token shards for language models"),
    "detokenize": ("codec.tokens", "decode a token directory back to WAV files"),
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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser: every installed sub-command, fully defined for ``command`` only.

    Args:
        command: The sub-command to run; its module is imported and registers
            its arguments. The others appear by name and help alone.
    """
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
        return int(args.func(args) or 0)
    except CodecError as e:
        print(f"codec {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"codec {args.command}: interrupted", file=sys.stderr)
        return 130


def run_module(command: str) -> NoReturn:
    """``python -m <module>`` of a command module: the same as ``codec <command> ...``."""
    sys.exit(main([command, *sys.argv[1:]]))


if __name__ == "__main__":
    sys.exit(main())
