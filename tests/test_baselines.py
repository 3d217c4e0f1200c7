"""Classical codecs through ffmpeg on real speech: measured bitrates, lengths, delays, errors."""

from __future__ import annotations

import shutil

import pytest
import torch
from conftest import load_speech

from codec.errors import InputError
from eval import baselines
from eval.metrics import stoi

RATE = 16000

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    """2 s of real speech at 16 kHz ``[T]``, an odd length that is no whole number of codec frames."""
    return load_speech(RATE, index=0, seconds=2.0)[0, 0, :-37]


def test_opus_round_trip_measures_its_own_bitrate(clip: torch.Tensor) -> None:
    (setting,) = baselines.parse_baselines("opus:6")
    trip = baselines.round_trip(clip, RATE, setting)
    assert trip.decoded.shape == clip.shape
    assert trip.kbps != setting.requested_kbps  # measured from the packets, not the request
    assert trip.kbps == pytest.approx(6.0, rel=0.25)
    assert trip.file_kbps > trip.kbps  # the Ogg container adds pages and header packets
    assert trip.delay_ms < 1.0  # the Ogg pre-skip is already removed by the decoder
    assert stoi(clip.numpy(), trip.decoded.numpy(), RATE) > 0.7


def test_codec2_delay_is_removed_and_its_fixed_rate_is_measured(clip: torch.Tensor) -> None:
    (setting,) = baselines.parse_baselines("codec2:3.2")
    trip = baselines.round_trip(clip, RATE, setting)
    assert trip.decoded.shape == clip.shape
    assert trip.kbps == pytest.approx(3.2, rel=0.03)  # 8 bytes per 20 ms frame, last frame padded
    assert trip.file_kbps > trip.kbps  # the .c2 header
    assert 5.0 < trip.delay_ms < 20.0
    assert stoi(clip.numpy(), trip.decoded.numpy(), RATE) > 0.6


def test_estimate_delay_finds_a_known_shift(clip: torch.Tensor) -> None:
    shifted = torch.cat([torch.zeros(37), clip])[: clip.numel()]
    assert baselines.estimate_delay(clip, shifted, max_lag=200) == 37
    assert baselines.estimate_delay(clip, clip, max_lag=200) == 0


def test_parse_baselines_selects_settings() -> None:
    assert [s.label for s in baselines.parse_baselines("opus")] == ["opus 6 kbps", "opus 8 kbps", "opus 12 kbps"]
    assert [s.label for s in baselines.parse_baselines("codec2:1.6, gsm")] == ["codec2 1.6 kbps", "gsm 13 kbps"]
    assert baselines.parse_baselines("") == []
    with pytest.raises(InputError, match="unknown baseline 'mp3'"):
        baselines.parse_baselines("opus,mp3")
    with pytest.raises(InputError, match="opus:6, opus:8, opus:12"):
        baselines.parse_baselines("opus:7")


def test_missing_ffmpeg_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, clip: torch.Tensor) -> None:
    monkeypatch.setattr(baselines.shutil, "which", lambda name: None)
    baselines.available_encoders.cache_clear()
    try:
        with pytest.raises(baselines.BaselineError, match="apt-get install ffmpeg"):
            baselines.round_trip(clip, RATE, baselines.parse_baselines("gsm")[0])
    finally:
        baselines.available_encoders.cache_clear()


def test_missing_encoder_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(baselines, "available_encoders", lambda: frozenset({"libopus"}))
    with pytest.raises(baselines.BaselineError, match="no libcodec2 encoder"):
        baselines.check_available(baselines.parse_baselines("codec2:3.2")[0])
