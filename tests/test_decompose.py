"""``codec decompose`` on real speech: the swap keeps what it is given, and the bundled decoder's magnitudes, not its
phases or its pitch, are what hold its PESQ down."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import load_speech

from codec.resolve import load_codec
from eval import metrics
from eval.decompose import VERSIONS, compare, scores, swap

DATA = Path(__file__).resolve().parent / "data"


def test_swapping_a_clip_with_itself_gives_it_back() -> None:
    wav = load_speech(16000, index=0)[0, 0].numpy()
    again = swap(wav, wav)
    assert np.abs(again - wav).max() < 1e-6
    other = load_speech(16000, index=1)[0, 0].numpy()[: len(wav)]
    mixed = swap(wav, other)  # the magnitudes of one clip with the phases of another: neither clip
    assert metrics.pesq_wb(wav, mixed, 16000) < 3.0


def test_the_bundled_decoders_magnitudes_hold_it_back_more_than_its_phases() -> None:
    model = load_codec("speech-16khz").eval()
    clips = [load_speech(16000, index=i) for i in range(3)]  # the whole clips, 2.7 s and under
    clips = [wav[..., : wav.shape[-1] // model.hop_length * model.hop_length] for wav in clips]
    row = scores(model, clips, kbps=2.0)
    assert set(row) == set(VERSIONS)
    decoded, magnitudes, phases, pitch = (row[v][0] for v in VERSIONS)
    assert phases > magnitudes > decoded, row  # PESQ; 13 dev clips: 2.68 > 2.01 > 1.51
    assert row["decoded phases"][1] > row["decoded magnitudes"][1] + 1.0, row  # ViSQOL; dev clips: 4.41 against 1.92
    assert abs(pitch - decoded) < 0.3, row  # Praat's pitch changes little: 1.54 against 1.51 on the dev clips


def test_the_command_prints_a_row_per_model_and_bitrate(capsys) -> None:
    assert compare(["speech-16khz"], str(DATA), [2.0, 0.0], limit=1, seconds=2.0) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| speech-16khz")]
    assert [row.split("|")[2].strip() for row in rows] == ["2", "latent"]
    assert all(row.count(" / ") == len(VERSIONS) for row in rows)
