"""The pitch probe reads more pitch from the trained bundled model's codes than from an untrained model's, and the
bundled harmonic decoder's own fundamental follows Praat's."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import fitted_model

from codec.errors import InputError
from codec.resolve import load_codec
from eval.pitch_probe import decoder_pitch, probe

DATA = Path(__file__).resolve().parent / "data"


def test_trained_codes_carry_pitch_that_untrained_ones_do_not() -> None:
    files = sorted(DATA.glob("*.wav"))
    train, dev = files[1:], files[:1]
    trained = probe(load_codec("speech-16khz").eval(), train, dev, kbps=2.0, steps=400)
    untrained = probe(load_codec("preset:16khz").eval(), train, dev, kbps=2.0, steps=400)
    assert trained.train_frames == untrained.train_frames > 100 and trained.dev_frames > 50
    assert trained.median_cents < untrained.median_cents - 100, (trained, untrained)
    assert trained.voicing_agreement > untrained.voicing_agreement + 0.05


def test_the_bundled_decoder_renders_the_fundamental_of_real_speech() -> None:
    model = load_codec("speech-16khz").eval()
    score = decoder_pitch(model, sorted(DATA.glob("*.wav")), kbps=2.0)
    assert score.median_cents < 100 and score.within_50_cents > 0.35, score  # the same network untrained: 1116 cents, 0.03
    assert score.voicing_agreement > 0.8


def test_a_harmonic_decoders_own_pitch_is_scored_and_other_decoders_are_refused(fitted_codec) -> None:
    files = sorted(DATA.glob("*.wav"))[:2]
    model = fitted_model("istft-harmonic")
    score = decoder_pitch(model, files, kbps=model.bandwidths_kbps[-1])
    assert 0 < score.excitation_share < 1 and 0 <= score.within_20_cents <= score.within_50_cents <= 1
    assert score.median_cents > 0 and 0 < score.voicing_agreement <= 1
    with pytest.raises(InputError, match="no decoder_harmonics"):
        decoder_pitch(fitted_codec, files, kbps=fitted_codec.bandwidths_kbps[-1])
