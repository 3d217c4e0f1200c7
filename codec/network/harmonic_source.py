"""Harmonic excitation of the istft decoder (``decoder_harmonics: true``): exact pitch harmonics, coherent phase.

A frame-rate head that predicts every bin's magnitude and phase has to place
each harmonic of the voice itself; a small error in the fundamental grows
with the harmonic's number, so with little training the harmonics above
about 1 kHz blur into noise, and their phases do not line up from frame to
frame. This module builds them instead, as neural source-filter vocoders do
(Wang et al., arXiv 1810.11946): from one fundamental ``f0`` per frame it
renders a sum of unit cosines at ``f0, 2 f0, ...`` below Nyquist, with the
phase of the fundamental carried from frame to frame, and returns each
frame's spectrum, windowed and framed as the decoder's overlap-add expects::

    f0 [B, F] (Hz, 0 = unvoiced)
      -> theta_f(n) = phi_f + 2 pi f0_f n / sr,  n in [0, n_fft)     (phi_f: running phase at the frame's start)
      -> e_f(n) = sum_{h=1..N_f} cos(h theta_f(n))   (N_f = harmonics below sr / 2; closed form, Dirichlet kernel)
      -> sqrt-Hann window, DFT as a matrix product -> [B, F, 2K] (real parts, then imaginary parts)

Frame ``f`` starts at sample ``f * hop`` (as the decoder's frames do), so
``phi_{f+1} = phi_f + 2 pi f0_f hop / sr``: where two frames overlap, the
later one starts with the phase the earlier one reached, and a steady voice
gives one continuous set of sinusoids. The decoder scales each bin of this
spectrum by a predicted gain (the spectral envelope) and adds it to its own
predicted spectrum (the aperiodic part). The fundamental is never
differentiated through: it is a prediction trained against a pitch tracker
(``loss.pitch``), or the tracker's value itself while training.

Streaming state: the running phase ``phi`` of each item, float64 ``[B, 1]``.
The DFT is a fixed basis product (as the decoder's synthesis), so the module
exports to ONNX and TorchScript as plain algebra. The running phase sums
every frame's predicted fundamental, whose float rounding differs between
call layouts (whole, chunked, exported: about 3e-7 relative), and harmonic
``h`` turns that drift into ``h`` times the phase error: streamed and
offline decodings of a decoder with harmonics agree to about 1e-3, not to
the 1e-5 of the other decoders (``tests/conftest.py``, ``drift_atol``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from codec.network.streaming import StreamingModule

#: The decoder predicts the fundamental as a class: bin ``i`` stands for ``F0_LOWEST_HZ * 2 ** (i * BIN_CENTS /
#: 1200)``, 192 bins of 25 cents from 50 Hz to 800 Hz (speech: about 60-500 Hz). Classes learn pitch faster and
#: finer than a regression of log f0 (CREPE, Kim et al. 2018; a regression head plateaued near 150 cents here).
F0_LOWEST_HZ, PITCH_BINS, BIN_CENTS = 50.0, 192, 25.0


def bin_cents() -> Tensor:
    """Each pitch bin's centre in cents above :data:`F0_LOWEST_HZ`, ``[PITCH_BINS]``."""
    return torch.arange(PITCH_BINS, dtype=torch.float32) * BIN_CENTS


def f0_of_logits(logits: Tensor, voicing: Tensor) -> Tensor:
    """Fundamentals ``[B, F]`` in Hz of pitch-bin logits ``[B, F, PITCH_BINS]`` and voicing logits ``[B, F]``.

    The pitch is the softmax-weighted mean of the bins within two of the most
    likely one (finer than a bin, and blind to a second peak an octave away);
    0 where the voicing logit is negative.
    """
    cents = bin_cents().to(logits.device)
    best = logits.argmax(dim=-1, keepdim=True)  # [B, F, 1]
    near = (torch.arange(PITCH_BINS, device=logits.device) - best).abs() <= 2
    weights = torch.softmax(logits.masked_fill(~near, float("-inf")), dim=-1)
    f0 = F0_LOWEST_HZ * torch.exp((weights * cents).sum(-1) * (math.log(2) / 1200))  # exp2 has no ONNX export
    return torch.where(voicing > 0, f0, torch.zeros_like(f0))


def analysis_basis(n_fft: int) -> Tensor:
    """Real and imaginary DFT rows of sqrt-Hann-windowed frames: ``frame [n_fft] @ basis [n_fft, 2K]``.

    The same spectrum as ``torch.fft.rfft(frame * sqrt_hann)``, as one matrix product.
    """
    bins = n_fft // 2 + 1
    n = torch.arange(n_fft, dtype=torch.float64)[:, None]
    angle = 2 * math.pi * n * torch.arange(bins, dtype=torch.float64)[None] / n_fft  # [n_fft, K]
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64).sqrt()[:, None]
    return torch.cat([window * torch.cos(angle), -window * torch.sin(angle)], dim=1).float()


def harmonic_sum(theta: Tensor, count: Tensor) -> Tensor:
    """``sum_{h=1..count} cos(h * theta)`` elementwise, by the Dirichlet kernel (``count`` broadcast to ``theta``).

    ``sin((N + 1/2) t) / (2 sin(t / 2)) - 1/2``, with ``t`` wrapped to
    ``[-pi, pi)`` (the sum has period 2 pi) and the limit ``N`` where
    ``sin(t / 2)`` vanishes.
    """
    wrapped = torch.remainder(theta + math.pi, 2 * math.pi) - math.pi
    half = torch.sin(wrapped / 2)
    near_zero = half.abs() < 1e-9
    kernel = torch.sin((count + 0.5) * wrapped) / (2 * torch.where(near_zero, torch.ones_like(half), half)) - 0.5
    return torch.where(near_zero, count.expand_as(kernel).to(kernel.dtype), kernel)


@dataclass
class SourceState:
    """The running phase of each item's fundamental at the next frame's start, ``[B, 1]`` (float64, ``[0, 2 pi)``)."""

    phase: Tensor


class HarmonicSource(StreamingModule[SourceState]):
    """Spectra ``[B, F, 2K]`` of harmonic excitation frames for fundamentals ``[B, F]`` (Hz; 0 = unvoiced).

    Args:
        n_fft: Frame length (the decoder's).
        hop_length: Samples between frames.
        sample_rate: Hz.
    """

    carried = ("phase",)

    def __init__(self, n_fft: int, hop_length: int, sample_rate: int) -> None:
        super().__init__()
        self.n_fft, self.hop_length, self.sample_rate = n_fft, hop_length, sample_rate
        self.register_buffer("basis", analysis_basis(n_fft), persistent=False)  # [n_fft, 2K]
        self.register_buffer("offsets", torch.arange(n_fft, dtype=torch.float64), persistent=False)  # [n_fft]

    def init_state(self, x: Tensor) -> SourceState:
        return SourceState(x.new_zeros(x.shape[0], 1, dtype=torch.float64))

    def forward(self, f0: Tensor) -> Tensor:
        """``f0`` [B, F] in Hz (0 where unvoiced) -> excitation spectra [B, F, 2K] (no gradient to ``f0``)."""
        state = self.get_state(f0)
        f0 = f0.detach().to(torch.float64)
        voiced = f0 > 0
        step = 2 * math.pi * f0 / self.sample_rate  # [B, F] radians per sample
        advance = step * self.hop_length
        start = state.phase + torch.cumsum(advance, dim=1) - advance  # [B, F] phase at each frame's first sample
        theta = start[..., None] + step[..., None] * self.offsets  # [B, F, n_fft]
        count = torch.floor(0.5 * self.sample_rate / torch.where(voiced, f0, torch.ones_like(f0)) - 1e-6)
        count = torch.where(voiced, count, torch.zeros_like(count))[..., None]  # [B, F, 1]
        frames = harmonic_sum(theta, count).to(self.basis.dtype)  # [B, F, n_fft]
        last = start[:, -1:] + advance[:, -1:]
        self.set_state(SourceState(torch.remainder(last, 2 * math.pi)))
        return frames @ self.basis
