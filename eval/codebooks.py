"""How well the codebooks are used on a dataset.

For each quantizer level, the codes produced over a whole dataset give a
usage distribution ``p`` over the ``K`` entries, and from it:

- **entropy** ``H = -sum_k p_k log2 p_k`` in bits per code (at most ``log2 K``):
  the rate a per-codebook entropy coder could approach;
- **perplexity** ``2 ** H``: the number of equally used entries that would
  give the same entropy (``K`` when every entry is used equally);
- **dead fraction**: the share of entries never used at all.

``codec codebooks --model M --data D`` prints them for a model over a folder
or manifest. A code used once in 100,000 frames looks dead in a 2-minute
sample, so measure on a whole split (the development split is 1.2 hours).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from codec import audio, measures
from codec.atomic import write_json
from codec.errors import InputError
from codec.resolve import load_codec
from codec.sources import check_limit, list_audio


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
    return CodebookStats(
        level=level,
        codes_seen=int(counts.sum()),
        entropy_bits=float(measures.entropy_bits(counts)),
        perplexity=float(measures.perplexity(counts)),
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


def format_table(stats: list[CodebookStats], seconds: float, frame_rate_hz: float) -> str:
    """The per-level table printed by ``codec codebooks``."""
    lines = [f"{'level':>5} {'codes seen':>10} {'entropy bits':>12} {'perplexity':>10} {'dead fraction':>13}"]
    for s in stats:
        lines.append(f"{s.level:>5} {s.codes_seen:>10} {s.entropy_bits:>12.2f} {s.perplexity:>10.1f} "
                     f"{s.dead_fraction:>13.3f}")
    worst = max(stats, key=lambda s: s.dead_fraction)
    lines.append(f"{seconds / 60:.1f} minutes of audio; most dead: level {worst.level} "
                 f"({worst.dead_fraction:.1%}); unigram entropy bound {entropy_bound_kbps(stats, frame_rate_hz):.2f} kbps")
    return "\n".join(lines)


def report(model_spec: str, data: str, limit: int | None = None, json_path: Path | None = None,
           quiet: bool = False) -> int:
    """Encodes every file of ``data`` with all codebooks and prints the usage of each (``codec codebooks``).

    Args:
        model_spec: What ``--model`` names (:func:`codec.resolve.load_codec`).
        data: A folder of audio files or a JSONL manifest.
        limit: Only the first ``limit`` files; None for all.
        json_path: Also write the statistics to this JSON file.
        quiet: No progress bar.

    Returns:
        The exit status, 0.
    """
    from tqdm import tqdm

    check_limit(limit)
    model = load_codec(model_spec)
    counter, seconds, start = CodeCounter(model.config.codebook_size), 0.0, time.perf_counter()
    for path in tqdm(list_audio(data, limit), desc="encoding", unit="file", disable=quiet):
        wav, _ = audio.load(path, target_rate=model.sample_rate, mono=True)  # [1, T]
        counter.update(model.encode(wav[None]).codes)
        seconds += wav.shape[-1] / model.sample_rate
    stats = counter.stats()
    print(format_table(stats, seconds, model.config.frame_rate_hz))
    print(f"model {model.model_id}; {time.perf_counter() - start:.0f} s")
    if json_path:
        summary = {"model": model_spec, "model_id": model.model_id, "audio_seconds": seconds,
                   "levels": [s.to_dict() for s in stats]}
        write_json(json_path, summary)
    return 0


if __name__ == "__main__":  # python -m eval.codebooks: the same as `codec codebooks`
    from codec.cli import run_module

    run_module("codebooks")
