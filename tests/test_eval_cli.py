"""``codec eval`` end to end on tests/data, and the file listing behind it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import DATA_DIR

from codec.cli import main
from codec.errors import InputError, ModelNotFoundError
from codec.network.presets import PRESETS, codec_tiny_config
from codec.resolve import MODEL_HELP, load_codec, load_model
from eval.evaluate import mean_ci, score
from eval.metrics import METRICS, Metric

FAST_METRICS = "sisdr,mel,stoi,pesq"


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_codec_eval_writes_json_markdown_plot_and_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    low, high = codec_tiny_config().bandwidths_kbps[:2]
    out = tmp_path / "report"
    argv = ["eval", "--model", "preset:tiny", "--data", str(DATA_DIR), "--kbps", f"{low:g},{high:g}",
            "--baselines", "opus:6", "--metrics", FAST_METRICS, "--out", str(out), "--limit", "2"]
    assert main(argv) == 0

    report = json.loads((out / "results.json").read_text())
    assert set(report) >= {"model", "data", "files", "eval_rate_hz", "metrics", "summary", "codebooks", "notes", "rows"}
    assert report["files"] == 2 and report["model"]["untrained_preset"] is True
    assert list(report["metrics"]) == FAST_METRICS.split(",")
    summary = {(s["system"], s["requested_kbps"]): s for s in report["summary"]}
    assert set(summary) == {("reference", None), ("codec-tiny", low), ("codec-tiny", high), ("latent", None),
                            ("opus", 6.0)}
    assert summary[("codec-tiny", low)]["kbps"] >= low  # code bits sent, the last frame padded
    assert summary[("codec-tiny", high)]["entropy_kbps"] > 0
    opus = summary[("opus", 6.0)]
    assert opus["kbps"] != 6.0 and opus["file_kbps"] > opus["kbps"]
    for entry in summary.values():
        for name in report["metrics"]:
            stats = entry["metrics"][name]
            assert set(stats) == {"mean", "ci95", "n"} and stats["n"] == 2
    assert summary[("reference", None)]["metrics"]["pesq"]["mean"] > opus["metrics"]["pesq"]["mean"]
    assert len(report["rows"]) == 2 * 5
    bands = ["0-0.5 kHz", "0.5-1 kHz", "1-2 kHz", "2-4 kHz", "4-8 kHz"]
    assert report["bands"] == bands and "STFT" in report["band_note"]
    for entry in summary.values():
        assert list(entry["bands_db"]) == bands and all(entry["bands_db"][b]["n"] == 2 for b in bands)
    assert all(summary[("reference", None)]["bands_db"][b]["mean"] == 0.0 for b in bands)
    assert opus["bands_db"]["4-8 kHz"]["mean"] < -10  # Opus VoIP at 6 kbps codes no more than 4 kHz
    latent = summary[("latent", None)]
    assert latent["kbps"] is None and latent["metrics"]["sisdr"]["n"] == 2
    assert latent["metrics"]["mel"]["mean"] != summary[("codec-tiny", high)]["metrics"]["mel"]["mean"]
    assert [c["level"] for c in report["codebooks"]] == [1, 2]

    markdown = (out / "results.md").read_text()
    assert "| system | requested kbps | measured kbps |" in markdown and "| opus | 6.00 |" in markdown
    assert "| 0-0.5 kHz dB | 0.5-1 kHz dB | 1-2 kHz dB | 2-4 kHz dB | 4-8 kHz dB |" in markdown
    assert "| latent (no quantizer) | - | - | - |" in markdown and "without quantization" in markdown
    assert (out / "index.html").is_file() and len(list((out / "listen").glob("*.flac"))) == 2 * 5
    assert (out / "rate_distortion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "| codec-tiny |" in printed and f"listening page: {(out / 'index.html').resolve()}" in printed
    assert not list(out.glob(".*.tmp")) and not list((out / "listen").glob(".*.tmp"))


def test_unsupported_bitrate_fails_before_writing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["eval", "--model", "preset:tiny", "--data", str(DATA_DIR), "--kbps", "5", "--baselines", "",
            "--metrics", "sisdr", "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    assert "bandwidth 5 kbps is not supported" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_models_load_from_presets_and_saved_directories(tmp_path: Path) -> None:
    preset = load_codec("preset:tiny")
    assert preset.config.name == "codec-tiny" and not preset.training
    assert load_codec("preset:tiny").model_id == preset.model_id  # the same seed every time
    preset.save_pretrained(tmp_path / "model")
    loaded = load_model(str(tmp_path / "model"))
    assert loaded.model_id == preset.model_id and loaded.name == "codec-tiny"
    assert loaded.tables.counts.shape == (preset.config.n_q, preset.config.codebook_size)
    with pytest.raises(InputError, match="choose from 16khz, 24khz, tiny"):
        load_model("preset:48khz")
    with pytest.raises(ModelNotFoundError):
        load_model(str(tmp_path / "missing"))
    assert all(f"preset:{name}" in MODEL_HELP for name in PRESETS)


def test_confidence_interval() -> None:
    stats = mean_ci([1.0, 2.0, 3.0, None])
    assert stats["mean"] == 2.0 and stats["n"] == 3
    assert stats["ci95"] == pytest.approx(4.302653 * 1.0 / 3**0.5, rel=1e-5)  # t(0.975, 2) = 4.3027
    assert mean_ci([5.0]) == {"mean": 5.0, "ci95": None, "n": 1}
    assert mean_ci([None]) == {"mean": None, "ci95": None, "n": 0}


def test_a_nan_score_becomes_none_with_a_note() -> None:
    nan_metric = Metric("nan", "NaN", True, lambda ref, deg, rate: float("nan"), None, "always NaN")
    notes: list[str] = []
    ref = torch.linspace(-0.5, 0.5, 8000)
    scores = score([METRICS["sisdr"], nan_metric], ref, ref, 16000, "clip.wav (x)", notes)
    assert scores == {"sisdr": 100.0, "nan": None}
    assert notes == ["nan failed on clip.wav (x): the score is nan (a silent signal?)"]
