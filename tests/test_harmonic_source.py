"""The harmonic excitation of ``decoder_harmonics``: exact harmonics, continuous phase, streaming, and the
decoder head that drives it."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from conftest import chunks, tiny_config

from codec.errors import ConfigError
from codec.network.harmonic_source import PITCH_BINS, HarmonicSource, analysis_basis, f0_of_logits, harmonic_sum
from codec.network.istft_decoder import ISTFTDecoder, analysis_frames
from codec.network.streaming import streaming

RATE, N_FFT, HOP = 16000, 640, 320


def cosines(f0_hz: float, samples: int) -> torch.Tensor:
    """``sum_h cos(2 pi h f0 t)`` over the harmonics below Nyquist, by brute force, float64 ``[T]``."""
    t = torch.arange(samples, dtype=torch.float64) / RATE
    count = math.floor(RATE / 2 / f0_hz - 1e-6)
    return sum(torch.cos(2 * math.pi * h * f0_hz * t) for h in range(1, count + 1))


def test_the_basis_is_the_windowed_real_dft() -> None:
    frame = torch.randn(3, N_FFT, dtype=torch.float64)
    spectrum = torch.fft.rfft(frame * torch.hann_window(N_FFT, periodic=True, dtype=torch.float64).sqrt())
    out = frame.float() @ analysis_basis(N_FFT)
    torch.testing.assert_close(out, torch.cat([spectrum.real, spectrum.imag], dim=-1).float(), atol=1e-3, rtol=1e-5)


def test_dirichlet_sum_is_the_sum_of_cosines_and_its_limit() -> None:
    theta = torch.tensor([0.0, 1e-12, 0.3, math.pi, 2 * math.pi, 4 * math.pi + 1e-13, 123.4], dtype=torch.float64)
    for n in (0, 1, 7, 39):
        expected = sum((torch.cos(h * theta) for h in range(1, n + 1)), torch.zeros_like(theta))
        torch.testing.assert_close(harmonic_sum(theta, torch.tensor(float(n), dtype=torch.float64)), expected,
                                   atol=1e-9, rtol=0)


@pytest.mark.parametrize("f0_hz", [200.0, 137.3])
def test_a_steady_fundamental_gives_the_frames_of_one_continuous_harmonic_signal(f0_hz: float) -> None:
    """Each frame is the window times its slice of one signal: the phase carries over exactly from frame to frame,
    and only harmonics below Nyquist are present."""
    frames = 12
    spectra = HarmonicSource(N_FFT, HOP, RATE).double()(torch.full((1, frames), f0_hz, dtype=torch.float64))
    expected = analysis_frames(cosines(f0_hz, frames * HOP + N_FFT)[None], N_FFT, HOP)[:, :frames]
    torch.testing.assert_close(spectra.double(), torch.cat([expected.real, expected.imag], dim=-1),
                               atol=2e-3, rtol=1e-5)
    if f0_hz == 200.0:  # harmonics on bins 8, 16, ... (25 Hz per bin), 39 of them: 40 x 200 Hz is Nyquist
        magnitude = torch.complex(*spectra[0, 5].chunk(2)).abs()
        inner = magnitude[1:-1]
        peaks = (inner > magnitude[:-2]) & (inner > magnitude[2:]) & (inner > 0.1 * magnitude.max())
        assert (peaks.nonzero().flatten() + 1).tolist() == list(range(8, 320, 8))
        assert magnitude[320] < 0.02 * magnitude.max()  # no 40th harmonic at Nyquist, only side lobes


def test_unvoiced_frames_are_silent_and_hold_the_phase() -> None:
    source = HarmonicSource(N_FFT, HOP, RATE).double()
    f0 = torch.tensor([[150.0, 150.0, 0.0, 0.0, 0.0, 150.0]], dtype=torch.float64)
    spectra = source(f0)
    assert not spectra[0, 2:5].any()
    # the last frame continues from where the second left off, as if the silence were not there
    steady = source(torch.full((1, 3), 150.0, dtype=torch.float64))
    torch.testing.assert_close(spectra[0, 5], steady[0, 2], atol=1e-6, rtol=0)


def test_streamed_chunks_give_the_whole_excitation() -> None:
    torch.manual_seed(0)
    f0 = 80 + 300 * torch.rand(2, 57)
    f0[:, 10:14] = 0
    source = HarmonicSource(N_FFT, HOP, RATE)
    whole = source(f0)
    with streaming(source, batch_size=2):
        parts = torch.cat([source(f0[:, s]) for s in chunks(57, [1, 4, 9, 30], 1)], dim=1)
    torch.testing.assert_close(parts, whole, atol=2e-3, rtol=1e-5)  # peaks near 300: float32 rounding


def test_pitch_classes_decode_finer_than_a_bin_and_ignore_a_far_second_peak() -> None:
    logits = torch.full((1, 4, PITCH_BINS), -20.0)
    logits[0, 0, 48] = 10.0  # bin 48: 12 semitones above 50 Hz
    logits[0, 1, 60] = logits[0, 1, 61] = 10.0  # halfway between two bins
    logits[0, 2, 20] = logits[0, 2, 68] = 10.0  # two equal peaks an octave apart: the first is taken, alone
    logits[0, 3, 100] = 10.0
    f0 = f0_of_logits(logits, torch.tensor([[1.0, 1.0, 1.0, -1.0]]))
    expected = [100.0, 50 * 2 ** (60.5 / 48), 50 * 2 ** (20 / 48), 0.0]
    torch.testing.assert_close(f0, torch.tensor([expected]), rtol=1e-5, atol=1e-4)


def test_teacher_forcing_replaces_the_predicted_fundamental() -> None:
    config = tiny_config("istft-harmonic")
    decoder = ISTFTDecoder(config)
    bins = config.n_fft // 2 + 1
    head = torch.zeros(1, 4, 3 * bins + PITCH_BINS + 1)
    head[..., 3 * bins + 48] = 10.0  # 100 Hz
    head[..., -1] = 1.0  # voiced
    assert decoder.f0(head).tolist() == [[pytest.approx(100.0, rel=1e-5)] * 4]
    head[..., 2 * bins : 3 * bins] = -1.0  # audible harmonics
    with torch.no_grad():
        own, forced = decoder.render(head), decoder.render(head, torch.full((1, 4), 300.0))
    assert own.shape == forced.shape == (1, 1, 4 * config.hop_length)
    assert not torch.allclose(own, forced)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"decoder_harmonics": True}, "decoder_harmonics needs decoder 'istft'"),
        ({"decoder": "istft", "n_fft": 16, "decoder_harmonics": True, "decoder_phase": "recovered",
          "decoder_subframes": 2}, "decoder_phase 'absolute' or 'integrated'"),
        ({"decoder": "istft", "decoder_harmonics": "yes"}, "decoder_harmonics must be true or false"),
    ],
    ids=["seanet", "recovered", "not-a-bool"],
)
def test_harmonics_config_errors_name_the_problem(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(tiny_config(), **changes)
