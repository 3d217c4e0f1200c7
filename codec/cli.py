"""The ``codec`` command line.

Each feature module contributes its sub-commands through a function
``register(subparsers)`` that adds parsers whose ``func`` default takes the
parsed arguments and returns an exit code. User errors (:class:`CodecError`)
print one line and exit with status 2, never a traceback.

Only the library is installed; ``train`` and ``eval`` live beside ``codec/``
in a checkout of the repository, where this module finds them (so
``codec train`` and ``codec eval`` exist only when run from a checkout).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import NoReturn

from codec.errors import CodecError

#: Modules that contribute sub-commands, in help order.
COMMAND_MODULES = ("codec.compress", "codec.tokens", "train.cli", "eval.cli", "eval.phonetic", "eval.codebooks", "codec.export")
#: Packages of a checkout that are not installed: they are imported from the folder that holds ``codec/``.
CHECKOUT_PACKAGES = ("train", "eval")


def checkout_root() -> Path | None:
    """The checkout that holds this ``codec/`` with :data:`CHECKOUT_PACKAGES` beside it, or None (installed)."""
    root = Path(__file__).resolve().parents[1]
    return root if all((root / name / "__init__.py").is_file() for name in CHECKOUT_PACKAGES) else None


def use_checkout_packages() -> None:
    """Puts the checkout, when there is one, first on the import path, so that ``train`` and ``eval`` import."""
    root = checkout_root()
    if root is not None and str(root) not in sys.path:
        sys.path.insert(0, str(root))


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available sub-command."""
    use_checkout_packages()
    parser = argparse.ArgumentParser(prog="codec", description="rvq-codec: neural audio compression and tokens")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and (e.name == name or name.startswith(e.name + ".")):
                continue  # the feature is not part of this installation
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    parser = build_parser()
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
