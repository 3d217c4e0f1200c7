"""The pitch probe reads more pitch from the trained bundled model's codes than from an untrained model's."""

from __future__ import annotations

from pathlib import Path

from codec.resolve import load_codec
from eval.pitch_probe import probe

DATA = Path(__file__).resolve().parent / "data"


def test_trained_codes_carry_pitch_that_untrained_ones_do_not() -> None:
    files = sorted(DATA.glob("*.wav"))
    train, dev = files[1:], files[:1]
    trained = probe(load_codec("speech-16khz").eval(), train, dev, kbps=2.0, steps=400)
    untrained = probe(load_codec("preset:16khz").eval(), train, dev, kbps=2.0, steps=400)
    assert trained.train_frames == untrained.train_frames > 100 and trained.dev_frames > 50
    assert trained.within_50_cents > untrained.within_50_cents + 0.1, (trained, untrained)
    assert trained.median_cents < untrained.median_cents
