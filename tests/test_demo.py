"""``make demo`` (eval.demo): its table and its listening page, on a saved tiny model and one real clip."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import DATA_DIR

from codec.cli import main
from codec.errors import InputError
from codec.network.presets import codec_tiny_config
from codec.resolve import load_codec
from eval import demo


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (the Opus rows need it)")
def test_demo_prints_its_table_and_writes_its_listening_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    load_codec("preset:tiny").save_pretrained(tmp_path / "model")
    kbps = codec_tiny_config().bandwidths_kbps[0]
    clip = min(DATA_DIR.glob("codec2_*.wav"))
    argv = [str(clip), "--model", str(tmp_path / "model"), "--kbps", f"{kbps:g}", "--opus", "6",
            "--out", str(tmp_path / "page")]
    assert main(["demo", *argv]) == 0
    printed = capsys.readouterr().out
    page = tmp_path / "page" / "index.html"
    assert f"ours {kbps:g} kbps" in printed and "opus 6 kbps" in printed
    assert f"listening page: {page.resolve()}" in printed
    text = page.read_text(encoding="utf-8")
    assert text.count("<audio controls") == 4  # reference, ours, latent, Opus
    assert "latent (no quantizer)" in text and "4-8 kHz dB" in text
    assert len(list((tmp_path / "page" / "listen").glob("*.flac"))) == 4


def test_the_default_clips_are_the_checkouts_dev_clips() -> None:
    clips = demo.default_clips()
    assert clips and all(c.parent == DATA_DIR and c.name.startswith(("asterisk_", "codec2_")) for c in clips)


def test_missing_clips_fail_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", str(tmp_path / "nope.wav"), "--out", str(tmp_path / "page")]) == 2
    assert "nope.wav does not exist; pass speech files" in capsys.readouterr().err
    with pytest.raises(InputError, match="pass speech files: python -m eval.demo FILE"):
        demo.default_clips(tmp_path)  # an installed package without the checkout's tests/data
    assert not (tmp_path / "page").exists()
