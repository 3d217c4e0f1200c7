"""Pitch targets (Praat's track read at the decoder's frames) and the pitch loss of ``decoder_harmonics``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from codec.errors import InputError
from codec.network.harmonic_source import PITCH_BINS
from codec.pitch import at_times, frame_pitch, pitch_loss

RATE, HOP, N_FFT = 16000, 320, 640


def pulses(f0_hz: float, seconds: float) -> torch.Tensor:
    """A glottal-like pulse train: each period a decaying 1 kHz burst, ``[1, 1, T]``."""
    t = np.arange(int(seconds * RATE)) / RATE
    phase = (t * f0_hz) % 1.0
    return torch.tensor(np.exp(-phase * 12) * np.sin(2 * np.pi * 1000 * phase / f0_hz), dtype=torch.float32)[None, None]


@pytest.mark.parametrize("f0_hz", [95.0, 180.0, 310.0])
def test_a_pulse_train_gives_its_fundamental_on_every_frame(f0_hz: float) -> None:
    f0 = frame_pitch(pulses(f0_hz, 1.0), RATE, HOP, N_FFT)
    assert f0.shape == (1, 50)
    assert torch.allclose(f0, torch.full_like(f0, f0_hz), rtol=0.01)


def test_speech_is_voiced_at_speech_pitches_and_silence_is_not(speech: Callable[..., torch.Tensor]) -> None:
    wav = speech(RATE, index=0, seconds=2.0)
    wav = torch.cat([wav, torch.zeros_like(wav)])  # a batch: speech, then silence
    f0 = frame_pitch(wav, RATE, HOP, N_FFT)
    assert f0.shape == (2, wav.shape[-1] // HOP)
    voiced = f0[0][f0[0] > 0]
    assert 0.3 < len(voiced) / f0.shape[1] < 0.95
    assert 60 <= voiced.min() and voiced.max() <= 500
    assert not f0[1].any()


def test_targets_interpolate_in_octaves_and_take_voicing_from_the_nearest_frame() -> None:
    times = np.array([0.00, 0.01, 0.02, 0.03])
    pitch = np.array([100.0, 200.0, 0.0, 400.0])
    out = at_times(times, pitch, np.array([0.005, 0.0175, 0.0275, 0.04]))
    np.testing.assert_allclose(out, [100 * 2**0.5, 0.0, 400.0, 400.0])


def test_crops_too_short_for_the_tracker_are_refused() -> None:
    with pytest.raises(InputError, match="too short to track pitch"):
        frame_pitch(torch.zeros(1, 1, 640), RATE, HOP, N_FFT)


def test_pitch_loss_is_voicing_cross_entropy_plus_pitch_class_cross_entropy() -> None:
    f0 = torch.tensor([[100.0, 200.0, 0.0, 0.0]])
    labels = torch.full((1, 4, PITCH_BINS + 1), -30.0)
    labels[..., -1] = torch.tensor([30.0, 30.0, -30.0, -30.0])  # voicing
    labels[0, 0, 48] = labels[0, 1, 96] = 30.0  # 100 and 200 Hz; the unvoiced frames' bins do not count
    sharp = pitch_loss(labels, f0)
    soft = pitch_loss(labels, f0, spread_cents=1.0)  # labels nearly one-hot: a sure, right guess costs ~0
    assert soft < 1e-3 < sharp  # the default spread of a bin asks for some doubt
    wrong = labels.clone()
    wrong[0, 1, 96], wrong[0, 1, 120] = -30.0, 30.0  # 6 semitones off on one of two voiced frames
    assert pitch_loss(wrong, f0) > sharp + 10
    unsure = labels.clone()
    unsure[..., -1] = 0.0
    torch.testing.assert_close(pitch_loss(unsure, f0) - sharp, torch.tensor(np.log(2), dtype=torch.float32),
                               atol=1e-4, rtol=0)
    assert torch.isfinite(pitch_loss(labels, torch.zeros(1, 4)))  # no voiced frame at all
