"""Tests of the corpus builder's pure steps (no apt-get, no network, no VAD)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from train import corpus
from train.corpus import Assignment

TUX = "usr/share/tuxpaint/stamps/animals/marsupials"
AST = "usr/share/asterisk/sounds"


@pytest.mark.parametrize(
    ("package", "relpath", "expected"),
    [
        ("tuxpaint-stamps-default", f"{TUX}/koala_desc_fr.ogg", Assignment("train", "tuxpaint-fr", "GPL-2")),
        ("tuxpaint-stamps-default", f"{TUX}/koala_desc.ogg", Assignment("train", "tuxpaint-en", "GPL-2")),
        ("tuxpaint-stamps-default", f"{TUX}/koala_desc_el.ogg", Assignment("dev", "tuxpaint-el", "GPL-2")),
        ("tuxpaint-stamps-default", f"{TUX}/koala_desc_da.ogg.ogg", Assignment("dev", "tuxpaint-da", "GPL-2")),
        ("tuxpaint-stamps-default", f"{TUX}/koala_desc_sv.ogg", None),
        ("tuxpaint-stamps-default", f"{TUX}/koala.ogg", None),
        ("klettres-data", "usr/share/klettres/fr/alpha/a.ogg", Assignment("train", "klettres-fr", "GPL-2+")),
        ("klettres-data", "usr/share/klettres/da/syllab/ba.ogg", None),
        ("klettres-data", "usr/share/klettres/it/alpha/a.ogg", None),
        ("gcin-voice", "usr/share/gcin-voice/ogg/ㄊㄢ3/5.ogg", Assignment("train", "gcin-voice5", "CC-BY-3.0")),
        ("gcin-voice", "usr/share/gcin-voice/ogg/ㄊㄢ3/3.ogg", Assignment("train", "gcin-voice3", "GPL-3 or LGPL-3")),
        ("codec2-examples", "usr/share/codec2/raw/speech_orig_16k.wav", Assignment("dev", "codec2", "LGPL-2.1")),
        ("codec2-examples", "usr/share/codec2/wav/hts1a.wav", None),
        (
            "asterisk-core-sounds-it-g722",
            f"{AST}/it_IT_m_Carlo/digits/1.g722",
            Assignment("dev", "asterisk-it-carlo", "CC-BY-3.0"),
        ),
        (
            "asterisk-core-sounds-fr-g722",
            f"{AST}/fr_CA_f_June/vm-deleted.g722",
            Assignment("train", "asterisk-fr-june", "CC-BY-SA-3.0"),
        ),
        (
            "asterisk-core-sounds-en-g722",
            f"{AST}/en_US_f_Allison/agent-pass.g722",
            Assignment("aligned", "asterisk-en-allison", "CC-BY-SA-3.0"),
        ),
        ("asterisk-core-sounds-es-g722", f"{AST}/es_MX_f_Allison/silence/1.g722", None),
    ],
    ids=lambda v: v.split("/")[-1] if isinstance(v, str) else None,
)
def test_classify_assigns_split_speaker_and_licence(package: str, relpath: str, expected: Assignment | None) -> None:
    assert corpus.classify(package, relpath) == expected


def test_parse_transcripts_reads_name_colon_text_lines() -> None:
    lines = [
        "\ufeff; Core Asterisk Sounds in English\n",
        "\n",
        "agent-pass: Please enter your password followed by the pound key.\n",
        "digits/10: ten\n",
        "at-tone-time-exactly: At the sound of the tone, the time will be: exactly...\n",
        "not a prompt line\n",
    ]
    assert corpus.parse_transcripts(lines) == {
        "agent-pass": "Please enter your password followed by the pound key.",
        "digits/10": "ten",
        "at-tone-time-exactly": "At the sound of the tone, the time will be: exactly...",
    }


def test_asterisk_prompt_name_keeps_subfolder() -> None:
    assert corpus.asterisk_prompt_name(f"{AST}/en_US_f_Allison/digits/1.g722") == "digits/1"


def test_output_stem_flattens_path_and_strips_double_suffix() -> None:
    assert corpus.output_stem(f"{TUX}/x_desc_da.ogg.ogg") == "tuxpaint__stamps__animals__marsupials__x_desc_da"


def test_trim_bounds_adds_margin_and_clamps() -> None:
    stamps = [{"start": 1000, "end": 5000}, {"start": 8000, "end": 9000}]
    start, end, speech_s = corpus.trim_bounds(stamps, num_samples=10_000, margin=1600)
    assert (start, end) == (0, 10_000)
    assert speech_s == pytest.approx(5000 / 16_000)
    assert corpus.trim_bounds(stamps, num_samples=20_000, margin=500)[:2] == (500, 9500)
    assert corpus.trim_bounds([], num_samples=100) == (0, 0, 0.0)


def test_build_clips_makes_exact_ten_second_clips() -> None:
    rng = np.random.default_rng(0)
    utterances = [rng.standard_normal(n).astype(np.float32) for n in (30_000, 50_000, 90_000, 250_000, 1000, 70_000)]
    clips = corpus.build_clips(utterances, max_clips=12)
    assert len(clips) == 3
    assert all(c.shape == (corpus.CLIP_SAMPLES,) and c.dtype == np.float32 for c in clips)
    gap = int(corpus.CLIP_GAP_S * corpus.SAMPLE_RATE_HZ)
    np.testing.assert_array_equal(clips[0][:30_000], utterances[0])
    assert not clips[0][30_000 : 30_000 + gap].any()  # silence between utterances
    np.testing.assert_array_equal(clips[0][30_000 + gap : 80_000 + gap], utterances[1])
    np.testing.assert_array_equal(clips[1], utterances[3][:160_000])  # long utterance split into pieces


def test_build_clips_respects_max_and_drops_short_tail() -> None:
    utterances = [np.ones(100_000, dtype=np.float32)] * 20
    assert len(corpus.build_clips(utterances, max_clips=4)) == 4
    assert corpus.build_clips([np.ones(50_000, dtype=np.float32)]) == []


def test_write_wav_atomic_writes_16_bit_pcm(tmp_path: Path) -> None:
    path = tmp_path / "x" / "clip.wav"
    corpus.write_wav_atomic(path, np.full(1600, 2.0, dtype=np.float32))  # clipped, not wrapped
    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (16_000, 1, "PCM_16", 1600)
    assert sf.read(str(path), dtype="int16")[0].min() == 32767


def test_summarize_counts_files_and_hours() -> None:
    rows = [{"speaker": "codec2", "duration_s": 1800.0}, {"speaker": "codec2", "duration_s": 1800.0}]
    table = corpus.summarize({"dev": rows})
    assert "codec2" in table and "1.000" in table and "TOTAL" in table


def test_require_tools_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corpus.shutil, "which", lambda name: None)
    with pytest.raises(corpus.CorpusError, match="apt-get install ffmpeg"):
        corpus.require_tools(["ffmpeg"])


def test_decode_downmixes_and_resamples_to_16k_mono() -> None:
    path = Path(__file__).parent / "data" / "tuxpaint_da_stoplight_44k1_stereo.wav"
    stereo, rate = sf.read(str(path), dtype="float32")  # [T, 2] at 44.1 kHz
    audio = corpus.decode(path)
    assert audio.ndim == 1 and audio.dtype == np.float32
    assert len(audio) == pytest.approx(len(stereo) * 16_000 / rate, abs=1)
    assert np.sqrt(np.mean(audio**2)) == pytest.approx(np.sqrt(np.mean(stereo.mean(axis=1) ** 2)), rel=0.05)
