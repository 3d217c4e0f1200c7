"""How well phases recovered from magnitudes render speech: the ceiling of ``decoder_phase: recovered``.

Each clip's true magnitudes (Hann-windowed frames placed as the istft decoder
places them) get phases from :class:`~codec.network.phase_recovery.PhaseRecovery`,
or, for reference, from PGHI's heap integration (Prusa et al. 2017, causal:
frames ``n`` and ``n - 1`` only), and are rendered by the decoder's overlap-add.
PESQ and ViSQOL compare the result with the clip; the first and last
``n_fft`` samples, which lack neighbouring frames, are left out.

    codec phase-recovery --data ~/data/rvq/dev_clips.jsonl --limit 4 --heap
"""

from __future__ import annotations

import heapq
import json
import time
from pathlib import Path

import numpy as np
import torch

from codec import audio
from codec.network.istft_decoder import OverlapAdd, analysis_frames
from codec.network.phase_recovery import LAMBDA, LOG_FLOOR, PhaseRecovery
from eval import metrics

RATE = 16000


def heap_phases(log_magnitude: np.ndarray, n_fft: int, hop: int, lam: float = LAMBDA) -> np.ndarray:
    """PGHI's causal heap integration: phases ``[S, K]`` of log-magnitudes ``[S, K]`` (a reference; slow)."""
    frames, bins = log_magnitude.shape
    lam = lam * n_fft**2
    nominal = 2 * np.pi * hop * np.arange(bins) / n_fft
    phases = np.zeros((frames, bins))
    prev_log, prev_advance, prev_phase = np.full(bins, LOG_FLOOR), nominal.copy(), np.zeros(bins)
    for n in range(frames):
        level = log_magnitude[n]
        advance = hop * n_fft / lam * np.gradient(level) + nominal
        spread = lam / (hop * n_fft) * (prev_log - level) + np.pi
        phase, todo = np.zeros(bins), level > LOG_FLOOR
        queue = [(-prev_log[k], k, False) for k in np.flatnonzero(prev_log > LOG_FLOOR)]
        heapq.heapify(queue)
        while todo.any():
            if not queue:  # an onset: start from the loudest bin not reached yet
                k = int(np.argmax(np.where(todo, level, -np.inf)))
                todo[k] = False
                queue.append((-level[k], k, True))
            while queue:
                _, k, current = heapq.heappop(queue)
                if not current:
                    if todo[k]:
                        phase[k] = prev_phase[k] + (prev_advance[k] + advance[k]) / 2
                        todo[k] = False
                        heapq.heappush(queue, (-level[k], k, True))
                    continue
                for j, sign in ((k + 1, 1), (k - 1, -1)):
                    if 0 <= j < bins and todo[j]:
                        phase[j] = phase[k] + sign * (spread[k] + spread[j]) / 2
                        todo[j] = False
                        heapq.heappush(queue, (-level[j], j, True))
        phases[n] = phase
        prev_log, prev_advance, prev_phase = level, advance, phase
    return phases


def score(clips: list[torch.Tensor], n_fft: int, hop: int, method: str, lam: float = LAMBDA) -> dict[str, float]:
    """Mean PESQ and ViSQOL of ``clips`` (each ``[1, T]`` float64) rendered with ``method``'s phases."""
    pesq, visqol, cpu = [], [], 0.0
    synthesis = OverlapAdd(n_fft, hop, "hann").double()
    for wav in clips:
        wav = wav[:, : wav.shape[-1] // hop * hop]  # whole frames
        spectra = analysis_frames(wav, n_fft, hop, "hann")  # [1, S, K]
        log_magnitude = spectra.abs().log().clamp(min=LOG_FLOOR)
        start = time.process_time()
        if method == "heap":
            phase = torch.from_numpy(heap_phases(log_magnitude[0].numpy(), n_fft, hop, lam))[None]
        else:
            phase = PhaseRecovery(n_fft, hop, lam).double()(log_magnitude)
        cpu += time.process_time() - start
        magnitude = spectra.abs()
        out = synthesis(torch.cat([magnitude * torch.cos(phase), magnitude * torch.sin(phase)], dim=-1))[0, 0]
        ref, deg = wav[0, n_fft:-n_fft].numpy(), out[n_fft:-n_fft].numpy()
        pesq.append(metrics.pesq_wb(ref, deg, RATE))
        visqol.append(metrics.visqol_speech(ref, deg, RATE))
    seconds = sum(c.shape[-1] for c in clips) / RATE
    return {"pesq": float(np.mean(pesq)), "visqol": float(np.mean(visqol)), "cpu_ms_per_s": 1000 * cpu / seconds}


def compare(data: Path, limit: int = 4, seconds: float = 4.0, n_fft: int = 640, hops: tuple[int, ...] = (160, 320),
            lambdas: tuple[float, ...] = (LAMBDA,), heap: bool = False) -> int:
    """Prints PESQ, ViSQOL and CPU time of recovered phases (and PGHI's heap) for each hop and lambda.

    Args:
        data: A JSONL manifest of clips (a ``path`` per line).
        limit: Clips to use, from the top.
        seconds: Seconds from each clip's start.
        n_fft: Frame length.
        hops: Hops to compare.
        lambdas: ``lambda / n_fft^2`` values.
        heap: Also PGHI's heap integration (about 0.1 s per audio second).

    Returns:
        0.
    """
    paths = [json.loads(line)["path"] for line in data.read_text().splitlines() if line.strip()][:limit]
    clips = []
    for path in paths:
        wav, _ = audio.load(path, target_rate=RATE, mono=True)  # [1, T]
        clips.append(wav[:, : int(seconds * RATE)].double())
    print(f"{len(clips)} clips of {seconds:g} s, n_fft {n_fft}, Hann")
    print("| hop | lambda | phases | PESQ | ViSQOL | CPU ms per audio s |\n|---|---|---|---|---|---|")
    for hop in hops:
        for lam in lambdas:
            for method in ("recovered", "heap") if heap else ("recovered",):
                row = score(clips, n_fft, hop, method, lam)
                print(f"| {hop} | {lam:g} | {method} | {row['pesq']:.2f} | {row['visqol']:.2f} | "
                      f"{row['cpu_ms_per_s']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":  # python -m eval.phase_recovery: the same as `codec phase-recovery`
    from codec.cli import run_module

    run_module("phase-recovery")
