"""Scoring the CPU-time snapshots of training runs (eval/recipes.py) on real speech."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import DATA_DIR, fitted_model

from codec.cli import main
from codec.errors import InputError
from eval import recipes


def _fake_run(root: Path, name: str, decoder: str) -> Path:
    """A run folder as the training loop leaves it: config.yaml and two snapshots with their index."""
    run = root / name
    (run / "snapshots").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"batch_size": 4, "data": {"segment_s": 0.25}}))
    lines = []
    for cpu_s, step in ((60.0, 10), (120.0, 25)):
        fitted_model(decoder).save_pretrained(run / "snapshots" / f"cpu-{cpu_s:g}s")
        lines.append(json.dumps({"cpu_s": cpu_s, "step": step, "snapshot": f"cpu-{cpu_s:g}s"}))
    (run / "snapshots" / "index.jsonl").write_text("\n".join(lines) + "\n")
    return run


def test_scores_every_snapshot_once_and_prints_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = [_fake_run(tmp_path, "seanet", "seanet"), _fake_run(tmp_path, "istft", "istft")]
    kbps = fitted_model("seanet").bandwidths_kbps[1]
    argv = [*map(str, runs), "--data", str(DATA_DIR), "--out", str(tmp_path / "scores"), "--kbps", f"{kbps:g}",
            "--limit", "2", "--metrics", "mel", "--speed-seconds", "0.5"]
    assert main(["recipes", *argv]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("| seanet", "| istft"))]
    assert len(rows) == 4
    assert "| seanet | 2 | 25 | 0.21 |" in out  # 25 steps x 4 x 0.25 s in 120 CPU s; 2 CPU minutes
    cache = json.loads((tmp_path / "scores" / "istft" / "cpu-120s.json").read_text())
    systems = {row["system"] for row in cache["summary"]}
    assert systems == {"reference", "codec-tiny", "latent"}
    assert cache["inference_x_realtime"] > 0
    assert (tmp_path / "scores" / "quality_vs_cpu.png").stat().st_size > 1000
    cache_file = tmp_path / "scores" / "istft" / "cpu-120s.json"
    cache_file.write_text(json.dumps(cache | {"step": -1}))  # a second run reads the cache instead of rescoring
    main(["recipes", *argv])
    assert "| istft | 2 | -1 |" in capsys.readouterr().out


def test_a_run_without_snapshots_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="snapshot_every_cpu_s"):
        recipes.snapshots(tmp_path)
