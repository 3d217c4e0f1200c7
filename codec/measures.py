"""Measures shared by the quantizer, training and evaluation: SI-SDR of a signal, perplexity of code usage.

- :func:`si_sdr_db`: scale-invariant signal-to-distortion ratio (Le Roux et
  al., "SDR - half-baked or well done?", ICASSP 2019), reference first.
- :func:`entropy_bits` and :func:`perplexity` of a codebook's usage counts:
  ``H = -sum_k p_k log2 p_k`` bits per code and ``2 ** H``, the number of
  equally used entries that would give the same entropy (``K`` when all
  ``K`` entries are used equally, 1 when one entry takes every code).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


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
