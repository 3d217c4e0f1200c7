"""Power spectrograms, and drawing one onto a matplotlib axis with labelled axes.

One short-time Fourier transform serves every place that looks at a spectrum:
the band energy metric (:func:`eval.metrics.band_energy_ratios_db`), the
listening page's images (:mod:`eval.listen`) and the TensorBoard images of
training. A Hann window of about 32 ms (:func:`fft_size`), hopped by a quarter
window; bin ``k`` is centred on ``k * sample_rate / n_fft`` Hz, from 0 to the
Nyquist frequency.

This module imports no plotting library: :func:`draw` takes the axis it draws on.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from codec.errors import InputError

WINDOW_S = 0.032  # about 32 ms: resolves the pitch harmonics of speech (> 60 Hz apart) and most formant motion
POWER_FLOOR = 1e-10  # -100 dB re a full-scale sine's bin power; keeps log10 finite on digital silence
DEFAULT_RANGE_DB = 80.0  # dynamic range shown below the loudest bin


def fft_size(sample_rate: int) -> int:
    """The power of two nearest :data:`WINDOW_S` seconds at ``sample_rate`` (512 at 16 kHz)."""
    return 1 << round(math.log2(sample_rate * WINDOW_S))


def power_spectrogram(wav: Tensor, n_fft: int) -> Tensor:
    """``|STFT|^2`` of ``wav`` [T], Hann window of ``n_fft`` samples hopped by ``n_fft // 4``.

    Frames are centred (the signal is reflect-padded by ``n_fft // 2``, or
    zero-padded when shorter than that).

    Returns:
        Power ``[n_fft // 2 + 1, frames]``, bin ``k`` at ``k * rate / n_fft`` Hz.
    """
    wav = wav.detach().float().cpu()
    if wav.dim() != 1:
        raise InputError(f"a spectrogram takes a mono signal [T], got shape {tuple(wav.shape)}")
    pad_mode = "reflect" if wav.shape[-1] > n_fft // 2 else "constant"
    spec = torch.stft(wav, n_fft, hop_length=n_fft // 4, window=torch.hann_window(n_fft), center=True,
                      pad_mode=pad_mode, return_complex=True)  # [n_fft // 2 + 1, frames]
    return spec.abs().square()


def power_db(wav: Tensor, sample_rate: int) -> Tensor:
    """``10 log10`` of :func:`power_spectrogram` at :func:`fft_size` (floored at :data:`POWER_FLOOR`), [F, frames]."""
    return power_spectrogram(wav, fft_size(sample_rate)).clamp(min=POWER_FLOOR).log10().mul(10)


def draw(ax: Any, wav: Tensor, sample_rate: int, vmin_db: float, vmax_db: float, title: str | None = None) -> Any:
    """Draws the spectrogram of ``wav`` [T] on the matplotlib axis ``ax``, linear frequency up to Nyquist.

    The colour scale runs from ``vmin_db`` to ``vmax_db``: pass the same pair
    for every signal that is to be compared. Axes are labelled in seconds and kHz.

    Returns:
        The image (for a colour bar).
    """
    db = power_db(wav, sample_rate).numpy()
    duration_s = wav.shape[-1] / sample_rate
    image = ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=vmin_db, vmax=vmax_db,
                      extent=(0.0, duration_s, 0.0, sample_rate / 2000), interpolation="nearest")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (kHz)")
    if title:
        ax.set_title(title, fontsize=9)
    return image


def colour_range_db(signals: list[Tensor], sample_rate: int, range_db: float = DEFAULT_RANGE_DB) -> tuple[float, float]:
    """``(vmin, vmax)``: the loudest bin over ``signals`` [T] each, and ``range_db`` below it."""
    top = max(float(power_db(s, sample_rate).max()) for s in signals)
    return top - range_db, top
