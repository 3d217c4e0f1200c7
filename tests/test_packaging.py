"""Only the library is installed; train and eval are found in the checkout, beside codec/."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import setuptools

from codec import cli

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_wheel_holds_the_library_alone() -> None:
    config = _pyproject()
    found = setuptools.find_packages(str(ROOT), include=config["tool"]["setuptools"]["packages"]["find"]["include"])
    assert "codec" in found and all(name == "codec" or name.startswith("codec.") for name in found)
    assert "." in config["tool"]["pytest"]["ini_options"]["pythonpath"]  # the tests import train and eval from here


def test_the_command_line_finds_train_and_eval_in_the_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli.checkout_root() == ROOT
    monkeypatch.setattr(sys, "path", [p for p in sys.path if Path(p or ".").resolve() != ROOT])
    cli.use_checkout_packages()
    assert sys.path[0] == str(ROOT)
    commands = cli.build_parser()._subparsers._group_actions[0].choices
    assert {"train", "eval", "codebooks", "phonetic", "compress", "tokenize"} <= set(commands)


def test_an_installed_codec_has_no_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "site" / "codec").mkdir(parents=True)
    monkeypatch.setattr(cli, "__file__", str(tmp_path / "site" / "codec" / "cli" / "__init__.py"))
    assert cli.checkout_root() is None
    path = list(sys.path)
    cli.use_checkout_packages()
    assert sys.path == path
