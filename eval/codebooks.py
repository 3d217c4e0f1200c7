"""How well the codebooks are used on a dataset.

For each quantizer level, the codes produced over a whole dataset give a
usage distribution ``p`` over the ``K`` entries, and from it:

- **entropy** ``H = -sum_k p_k log2 p_k`` in bits per code (at most ``log2 K``):
  the rate a per-codebook entropy coder could approach;
- **perplexity** ``2 ** H``: the number of equally used entries that would
  give the same entropy (``K`` when every entry is used equally);
- **dead fraction**: the share of entries never used at all.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from codec.errors import InputError


@dataclass(frozen=True)
class CodebookStats:
    """Usage of one codebook over a dataset.

    Attributes:
        level: Quantizer level, 1 for the first codebook.
        codes_seen: Number of codes counted.
        entropy_bits: Entropy of the usage distribution in bits per code.
        perplexity: ``2 ** entropy_bits``.
        dead_fraction: Share of the entries never used.
        bits_per_code: ``log2(codebook_size)``, the nominal cost of one code.
    """

    level: int
    codes_seen: int
    entropy_bits: float
    perplexity: float
    dead_fraction: float
    bits_per_code: float

    def to_dict(self) -> dict[str, float | int]:
        """Plain dict for JSON."""
        return asdict(self)


class CodeCounter:
    """Accumulates code counts per level over batches of codes.

    Args:
        codebook_size: Entries per codebook.
    """

    def __init__(self, codebook_size: int) -> None:
        self.codebook_size = codebook_size
        self.counts: Tensor | None = None  # [n_q, K]

    def update(self, codes: Tensor, frame_lengths: Tensor | None = None) -> None:
        """Counts ``codes`` [B, n_q, F] (only the first ``frame_lengths[b]`` frames of item ``b``).

        Raises:
            InputError: On a wrong shape, a code out of range, or a change in ``n_q``.
        """
        if codes.dim() != 3:
            raise InputError(f"expected codes shaped [B, n_q, F], got {tuple(codes.shape)}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise InputError(f"codes must lie in 0..{self.codebook_size - 1}")
        batch, n_q, frames = codes.shape
        if self.counts is None:
            self.counts = torch.zeros(n_q, self.codebook_size, dtype=torch.long)
        if n_q != self.counts.shape[0]:
            raise InputError(f"codes have {n_q} codebooks but earlier batches had {self.counts.shape[0]}")
        valid = torch.ones(batch, frames, dtype=torch.bool)
        if frame_lengths is not None:
            valid = torch.arange(frames)[None] < frame_lengths.cpu()[:, None]  # [B, F]
        for level in range(n_q):
            used = codes[:, level].cpu()[valid]  # [N]
            self.counts[level] += torch.bincount(used, minlength=self.codebook_size)

    def stats(self) -> list[CodebookStats]:
        """Statistics of every level counted so far.

        Raises:
            InputError: If nothing was counted.
        """
        if self.counts is None or int(self.counts.sum()) == 0:
            raise InputError("no codes were counted; encode at least one non-empty signal first")
        return [_level_stats(level + 1, counts) for level, counts in enumerate(self.counts)]


def _level_stats(level: int, counts: Tensor) -> CodebookStats:
    total = int(counts.sum())
    probs = counts.double() / total
    used = probs[probs > 0]
    entropy = float(-(used * used.log2()).sum())
    return CodebookStats(
        level=level,
        codes_seen=total,
        entropy_bits=entropy,
        perplexity=2.0**entropy,
        dead_fraction=float((counts == 0).double().mean()),
        bits_per_code=math.log2(counts.numel()),
    )


def codebook_stats(batches: Iterable[Tensor], codebook_size: int) -> list[CodebookStats]:
    """Statistics of each codebook over code tensors ``[B, n_q, F]`` (every frame counted)."""
    counter = CodeCounter(codebook_size)
    for codes in batches:
        counter.update(codes)
    return counter.stats()


def entropy_bound_kbps(stats: list[CodebookStats], frame_rate_hz: float) -> float:
    """Bitrate in kbit/s of an ideal per-codebook (unigram) entropy coder: ``sum H_l * frame rate``."""
    return sum(s.entropy_bits for s in stats) * frame_rate_hz / 1000
