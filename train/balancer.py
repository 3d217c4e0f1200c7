"""EnCodec-style gradient balancer.

For balanced losses ``l_i`` with weights ``w_i``, all functions of the decoded
waveform ``x_hat``, the gradient applied to ``x_hat`` is

    g = sum_i  R * (w_i / sum_j w_j) * g_i / EMA_beta(||g_i||_2)      g_i = d l_i / d x_hat

with ``R = 1`` (the total gradient norm) and ``||g_i||_2`` the per-item norm
averaged over the batch (and over processes). Each loss thus contributes a
share ``w_i / sum_j w_j`` of the gradient whatever its raw scale (Défossez et
al. 2022, arXiv 2210.13438, section 3.4). The balanced gradient is then
back-propagated through the generator with the surrogate
``sum(x_hat * sg(g))``, so that ``accelerator.backward`` still handles
gradient accumulation and mixed-precision scaling.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


class Balancer:
    """Rescales per-loss gradients w.r.t. the decoded waveform to fixed shares.

    Args:
        weights: Weight of each loss by name; shares are ``w_i / sum_j w_j``.
        decay: EMA decay of the gradient norms (EnCodec: 0.999).
        total_norm: ``R``, the norm the combined gradient aims at.
        reduce: Averages a tensor over processes (e.g. ``accelerator.reduce``
            with ``"mean"``); identity by default.
        epsilon: Guard against division by zero.
    """

    def __init__(
        self,
        weights: dict[str, float],
        decay: float = 0.999,
        total_norm: float = 1.0,
        reduce: Callable[[Tensor], Tensor] | None = None,
        epsilon: float = 1e-12,
    ) -> None:
        self.weights = {k: float(w) for k, w in weights.items() if w > 0}
        self.decay, self.total_norm, self.epsilon = decay, total_norm, epsilon
        self.reduce = reduce or (lambda t: t)
        self.norm_sums: dict[str, float] = {}
        self.weight_sum = 0.0
        self.last_shares: dict[str, float] = {}

    def _ema_norm(self, name: str, norm: float) -> float:
        # Bias-corrected EMA: norm_sums / weight_sum, as an average that starts at the first value.
        self.norm_sums[name] = self.decay * self.norm_sums.get(name, 0.0) + norm
        return self.norm_sums[name] / self.weight_sum

    def gradient(self, losses: dict[str, Tensor], x_hat: Tensor, known: dict[str, Tensor] | None = None) -> Tensor:
        """The balanced gradient w.r.t. ``x_hat`` [B, C, T] of the weighted ``losses``.

        Losses without a positive weight are ignored. ``known`` holds gradients
        at ``x_hat`` already computed, by loss name. Updates the norm EMAs and
        :attr:`last_shares` (each loss's share of the applied gradient norm).
        """
        known = known or {}
        names = [n for n in losses if n in self.weights]
        grads = [known[n] if n in known else torch.autograd.grad(losses[n], x_hat, retain_graph=True)[0]
                 for n in names]
        self.weight_sum = self.decay * self.weight_sum + 1.0
        weight_total = sum(self.weights[n] for n in names)
        out = torch.zeros_like(x_hat)
        scaled_norms = {}
        for name, grad in zip(names, grads):
            norm = self.reduce(grad.flatten(1).norm(dim=1).mean().detach())
            ema = self._ema_norm(name, float(norm))
            scale = self.total_norm * self.weights[name] / weight_total / (ema + self.epsilon)
            out = out + scale * grad
            scaled_norms[name] = scale * float(norm)
        norm_total = sum(scaled_norms.values()) or 1.0
        self.last_shares = {n: v / norm_total for n, v in scaled_norms.items()}
        return out

    def surrogate(
        self, losses: dict[str, Tensor], x_hat: Tensor, scale: float = 1.0, known: dict[str, Tensor] | None = None
    ) -> Tensor:
        """A scalar whose gradient w.r.t. the generator is the balanced gradient through ``x_hat``, times
        ``scale`` (the norm a unit gradient at the waveform takes at ``x_hat``, when ``x_hat`` is not the
        waveform: see ``train.loop.waveform_to``); ``known`` as in :meth:`gradient`."""
        return (x_hat * (scale * self.gradient(losses, x_hat, known)).detach()).sum()

    def state_dict(self) -> dict:
        """EMA state, for checkpoints."""
        return {"norm_sums": dict(self.norm_sums), "weight_sum": self.weight_sum}

    def load_state_dict(self, state: dict) -> None:
        """Restores :meth:`state_dict`."""
        self.norm_sums = dict(state["norm_sums"])
        self.weight_sum = float(state["weight_sum"])
