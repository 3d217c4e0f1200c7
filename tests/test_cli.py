"""One command-line home: the ``python -m`` entry points of train and eval are the ``codec`` sub-commands."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

from codec.cli import COMMANDS, main
from train import corpus

#: ``python -m MODULE`` -> the ``codec`` sub-command it runs.
ENTRY_POINTS = {
    "train": "train",
    "train.corpus": "corpus",
    "train.package": "package",
    "train.bench": "bench-train",
    "eval.codebooks": "codebooks",
    "eval.phonetic": "phonetic",
    "eval.bench": "bench",
    "eval.bench_bitstream": "bench-bitstream",
    "eval.demo": "demo",
    "eval.recipes": "recipes",
}


# Run in this process, a module that registering an earlier command imported is run again as __main__: fine here.
@pytest.mark.filterwarnings("ignore:.*found in sys.modules after import of package:RuntimeWarning")
@pytest.mark.parametrize(("module", "command"), ENTRY_POINTS.items(), ids=list(ENTRY_POINTS))
def test_python_m_runs_the_codec_sub_command(
    module: str, command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert command in COMMANDS
    monkeypatch.setattr(sys, "argv", [module, "--help"])
    with pytest.raises(SystemExit) as exited:
        runpy.run_module(module, run_name="__main__")
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: codec {command} ")


def test_a_sub_command_error_is_one_line_and_status_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(corpus.shutil, "which", lambda name: None)
    assert main(["corpus", "--out", str(tmp_path / "corpus")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("codec corpus: error: `apt-get` not found") and err.count("\n") == 1
    assert not (tmp_path / "corpus").exists()
