"""Training losses: reconstruction, adversarial and feature matching."""

from __future__ import annotations

import warnings

import auraloss
import torch
from torch import Tensor
from torch.nn import functional as F

from train.discriminators import DiscOutput


class MelLoss(torch.nn.Module):
    """Multi-resolution mel-spectrogram loss (auraloss): spectral convergence + log-magnitude L1 per resolution.

    Args:
        sample_rate: Audio rate.
        windows: Window (= FFT) sizes; hop is a quarter of the window.
        n_mels: Mel bins (capped at ``window // 4`` for small windows so no filter is empty).
    """

    def __init__(self, sample_rate: int, windows: tuple[int, ...], n_mels: int) -> None:
        super().__init__()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # librosa's note on empty filters of tiny windows
            self.losses = torch.nn.ModuleList(
                auraloss.freq.STFTLoss(
                    fft_size=w, hop_size=w // 4, win_length=w, sample_rate=sample_rate,
                    scale="mel", n_bins=min(n_mels, w // 4), w_sc=1.0, w_log_mag=1.0,
                )
                for w in windows
            )

    def forward(self, x_hat: Tensor, x: Tensor) -> Tensor:
        """Mean over resolutions; ``x_hat`` and ``x`` are [B, 1, T]."""
        return sum(loss(x_hat, x) for loss in self.losses) / len(self.losses)


def discriminator_loss(real: list[DiscOutput], fake: list[DiscOutput], kind: str) -> Tensor:
    """Hinge (``max(0, 1 - D(x)) + max(0, 1 + D(x_hat))``) or least-squares loss, mean over sub-discriminators."""
    total = 0.0
    for (real_logits, _), (fake_logits, _) in zip(real, fake):
        if kind == "hinge":
            total = total + F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
        else:
            total = total + (real_logits - 1).pow(2).mean() + fake_logits.pow(2).mean()
    return total / len(real)


def generator_adversarial_loss(fake: list[DiscOutput], kind: str) -> Tensor:
    """Hinge (``max(0, 1 - D(x_hat))``) or least-squares generator loss, mean over sub-discriminators."""
    losses = [F.relu(1 - logits).mean() if kind == "hinge" else (logits - 1).pow(2).mean() for logits, _ in fake]
    return sum(losses) / len(losses)


def feature_matching_loss(real: list[DiscOutput], fake: list[DiscOutput]) -> Tensor:
    """Relative feature matching (EnCodec): ``|f(x) - f(x_hat)|_1 / mean|f(x)|`` averaged over all layers."""
    terms = []
    for (_, real_feats), (_, fake_feats) in zip(real, fake):
        for r, f in zip(real_feats, fake_feats):
            r = r.detach()
            terms.append(F.l1_loss(f, r) / (r.abs().mean() + 1e-8))
    return sum(terms) / len(terms)


def si_sdr(estimate: Tensor, reference: Tensor, eps: float = 1e-8) -> Tensor:
    """Scale-invariant SDR in dB per item; inputs [B, 1, T]."""
    reference = reference - reference.mean(-1, keepdim=True)
    estimate = estimate - estimate.mean(-1, keepdim=True)
    scale = (estimate * reference).sum(-1, keepdim=True) / (reference.pow(2).sum(-1, keepdim=True) + eps)
    target = scale * reference
    noise = estimate - target
    return 10 * torch.log10(target.pow(2).sum(-1) / (noise.pow(2).sum(-1) + eps) + eps).squeeze(1)
