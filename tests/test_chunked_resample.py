"""Block-by-block resampling gives the output of resampling the whole signal."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from codec import audio
from codec.errors import InputError
from codec.fileformat.chunked_resample import ChunkedResampler


def _chunked(wav: torch.Tensor, orig: int, target: int, block: int) -> torch.Tensor:
    resampler = ChunkedResampler(orig, target, wav.shape[0])
    outs = [resampler.process(wav[:, i : i + block]) for i in range(0, wav.shape[-1], block)]
    return torch.cat([*outs, resampler.flush()], dim=-1)


@pytest.mark.parametrize("target", [16000, 24000, 8000, 44100])
@pytest.mark.parametrize("block", [1, 997, 44100])
def test_stereo_speech_resamples_like_the_whole_file(stereo_clip: Path, target: int, block: int) -> None:
    wav, rate = audio.load(stereo_clip)  # [2, T] at 44.1 kHz
    wav = wav[:, : rate // 10 if block == 1 else None]  # sample by sample: a tenth of a second is enough
    whole = audio.resample(wav, rate, target)
    chunked = _chunked(wav, rate, target, block)
    assert chunked.shape == whole.shape
    assert (chunked - whole).abs().max() <= 1e-5


@pytest.mark.parametrize("length", [1, 2, 159, 441])
def test_short_signals_get_the_whole_file_length(length: int, stereo_clip: Path) -> None:
    wav, rate = audio.load(stereo_clip)
    piece = wav[:, 20000 : 20000 + length]
    for target in (16000, 48000):
        assert _chunked(piece, rate, target, 100).shape == audio.resample(piece, rate, target).shape


def test_equal_rates_pass_through(mono_clip: Path) -> None:
    wav, rate = audio.load(mono_clip)
    out = _chunked(wav, rate, rate, 4000)
    assert torch.equal(out, wav)


def test_rate_pairs_needing_a_huge_filter_bank_are_refused() -> None:
    for orig, target in ((44100, 16000), (22050, 16000), (44056, 16000), (16000, 192000)):
        ChunkedResampler(orig, target, 1)
    with pytest.raises(InputError, match="cannot resample 16000 Hz to 44101 Hz"):
        ChunkedResampler(16000, 44101, 1)
