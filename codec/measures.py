"""Measures shared by the quantizer, training and evaluation: SI-SDR of a signal, perplexity of code usage.

- :func:`si_sdr_db`: scale-invariant signal-to-distortion ratio (Le Roux et
  al., "SDR - half-baked or well done?", ICASSP 2019), reference first.
- :func:`entropy_bits` and :func:`perplexity` of a codebook's usage counts:
  ``H = -sum_k p_k log2 p_k`` bits per code and ``2 ** H``, the number of
  equally used entries that would give the same entropy (``K`` when all
  ``K`` entries are used equally, 1 when one entry takes every code).
- :func:`pitch_track`: Praat's autocorrelation pitch track of a signal
  (Boersma, "Accurate short-term analysis of the fundamental frequency...",
  1993), through ``parselmouth``: the targets of ``loss.pitch`` and the
  ``pitch`` metric.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from codec.errors import CodecError

#: Praat's pitch search range, in Hz: the usual one for the speech of adults and children.
PITCH_FLOOR_HZ, PITCH_CEILING_HZ = 60.0, 500.0
#: Praat's analysis step, in seconds.
PITCH_STEP_S = 0.01


def pitch_track(wav: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Praat's pitch track of a mono signal ``[T]``: analysis times ``[N]`` (s from the first sample) and
    pitch ``[N]`` (Hz, 0 where unvoiced); ``N`` is 0 for a signal under 3 periods of the floor (50 ms).

    Raises:
        CodecError: ``praat-parselmouth`` is not installed (it comes with the train and eval extras).
    """
    try:
        import parselmouth
    except ImportError as err:
        raise CodecError("pitch tracking needs Praat's Python binding: pip install praat-parselmouth "
                         "(part of the train and eval extras)") from err
    sound = parselmouth.Sound(np.asarray(wav, dtype=np.float64), sampling_frequency=sample_rate)
    pitch = sound.to_pitch_ac(time_step=PITCH_STEP_S, pitch_floor=PITCH_FLOOR_HZ, pitch_ceiling=PITCH_CEILING_HZ)
    return np.asarray(pitch.xs()), pitch.selected_array["frequency"]


def si_sdr_db(reference: Tensor, estimate: Tensor, eps: float = 1e-8) -> Tensor:
    """SI-SDR in dB of ``estimate`` against ``reference``, both [..., T]: one value per leading index, [...].

    Both signals are made zero-mean; ``estimate`` is split into its
    projection onto ``reference`` (the target) and the rest (the
    distortion), and the result is ``10 log10((|target|^2 + eps) / (|distortion|^2 + eps))``.

    Args:
        reference: The clean signal [..., T].
        estimate: The signal to score [..., T].
        eps: Keeps silence finite: two silent signals score 0 dB. Use a
            smaller value (float64 machine epsilon) to resolve near-identical signals.
    """
    reference = reference - reference.mean(-1, keepdim=True)
    estimate = estimate - estimate.mean(-1, keepdim=True)
    scale = (estimate * reference).sum(-1, keepdim=True) / (reference.pow(2).sum(-1, keepdim=True) + eps)
    target = scale * reference
    distortion = estimate - target
    return 10 * torch.log10((target.pow(2).sum(-1) + eps) / (distortion.pow(2).sum(-1) + eps))


def entropy_bits(counts: Tensor) -> Tensor:
    """Entropy in bits per code of usage ``counts`` [..., K]: [...] (float64 on the CPU; 0 where nothing was counted)."""
    counts = counts.detach().cpu().double()  # small; float64 is not on every device
    probs = counts / counts.sum(-1, keepdim=True).clamp(min=1)
    return -torch.special.xlogy(probs, probs).sum(-1) / math.log(2)


def perplexity(counts: Tensor) -> Tensor:
    """Perplexity ``2 ** entropy_bits(counts)`` of usage ``counts`` [..., K]: [...] (float64)."""
    return torch.exp2(entropy_bits(counts))
