"""Phase recovered from magnitudes (``decoder_phase: recovered``): quality on real speech, streaming, peaks.

The codec-level properties of a decoder using it (prefix causality, streaming ==
offline, padding invariance, training gradients, export parity) run in
``tests/test_model.py`` and ``tests/test_frame_step.py`` through the
``any_decoder_codec`` fixture.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import chunks, data_wavs

from codec.cli import main
from codec.network.istft_decoder import OverlapAdd, analysis_frames
from codec.network.phase_recovery import LOG_FLOOR, PhaseRecovery
from codec.network.streaming import streaming
from eval.metrics import mel_distance

Speech = Callable[..., torch.Tensor]
N_FFT, HOP = 640, 160


def _render(magnitude: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """Audio ``[T]`` of magnitudes and phases ``[1, S, K]`` through the decoder's Hann overlap-add."""
    synthesis = OverlapAdd(N_FFT, HOP, "hann").double()
    return synthesis(torch.cat([magnitude * torch.cos(phase), magnitude * torch.sin(phase)], dim=-1))[0, 0]


def test_speech_rendered_from_its_magnitudes_keeps_its_spectrum(speech: Speech) -> None:
    """From true magnitudes of real speech, recovered phases render it far closer than random phases do."""
    wav = speech(16000, index=0, seconds=2.0)[:, 0].double()  # [1, T]
    spectra = analysis_frames(wav, N_FFT, HOP, "hann")  # [1, S, K]
    magnitude = spectra.abs()
    recovered = _render(magnitude, PhaseRecovery(N_FFT, HOP)(magnitude.log()))
    torch.manual_seed(0)
    scrambled = _render(magnitude, torch.rand_like(magnitude) * 2 * torch.pi)
    start, end = N_FFT, wav.shape[-1] - N_FFT  # the first frames lack their predecessors; the last, zeros after
    ref = wav[0, start:end].numpy()
    good, bad = (mel_distance(ref, y[start:end].numpy(), 16000) for y in (recovered, scrambled))
    assert good < 0.6 * bad, (good, bad)
    true = _render(magnitude, spectra.angle())
    torch.testing.assert_close(true[start:end], wav[0, start:end], atol=1e-6, rtol=0)  # the synthesis is exact


@pytest.mark.parametrize("plan", [[1], [3, 1, 5], [2]], ids=["1-frame", "uneven", "2-frames"])
def test_recovery_streams_exactly(speech: Speech, plan: list[int]) -> None:
    wav = speech(16000, index=1, seconds=1.0)[:, 0]
    log_magnitude = analysis_frames(wav, N_FFT, HOP, "hann").abs().log()  # [1, S, K] float32
    recovery = PhaseRecovery(N_FFT, HOP)
    whole = recovery(log_magnitude)
    with streaming(recovery, 1):
        parts = torch.cat([recovery(log_magnitude[:, s]) for s in chunks(log_magnitude.shape[1], plan, 1)], dim=1)
    torch.testing.assert_close(parts, whole, atol=1e-5, rtol=0)
    assert whole.dtype == torch.float32 and whole.abs().max() <= torch.pi


def test_every_region_between_minima_has_one_peak() -> None:
    """Random, flat and silent spectra: each bin is tied to a peak of its own region, never to a wrong bin."""
    torch.manual_seed(0)
    recovery = PhaseRecovery(N_FFT, HOP)
    levels = torch.cat([torch.randn(1, 8, 321), torch.zeros(1, 1, 321), torch.randn(1, 1, 321).round()], dim=1)
    anchor = recovery._peaks(levels)
    gathered = levels.gather(-1, anchor)
    assert (gathered >= levels).all()  # a region's peak is its highest bin
    left = levels.gather(-1, (anchor - 1).clamp(min=0))
    right = levels.gather(-1, (anchor + 1).clamp(max=320))
    assert ((gathered >= left) & ((gathered > right) | (anchor == 320))).all()


def test_silence_and_huge_values_give_finite_phases() -> None:
    recovery = PhaseRecovery(N_FFT, HOP)
    for value in (LOG_FLOOR - 50.0, 0.0, 80.0):
        assert torch.isfinite(recovery(torch.full((2, 3, 321), value))).all()
    assert recovery(torch.randn(1, 4, 321, requires_grad=True)).grad_fn is None  # the phase carries no gradient


def test_command_scores_recovered_and_heap_phases_on_speech(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    manifest = tmp_path / "clips.jsonl"
    manifest.write_text(f'{{"path": "{data_wavs(channels=1)[0]}"}}\n')
    assert main(["phase-recovery", "--data", str(manifest), "--limit", "1", "--seconds", "3", "--hops", "160",
                 "--heap"]) == 0
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines() if line.startswith("| 160")]
    assert [row[3].strip() for row in rows] == ["recovered", "heap"]
    assert all(float(row[4]) > 2.5 and float(row[5]) > 3.5 for row in rows), rows  # PESQ, ViSQOL
