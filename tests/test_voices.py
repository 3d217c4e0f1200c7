"""The parallel-text voices of the speaker probe: festival's English voices saying the same sentences."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import soundfile as sf

from codec.errors import InputError
from eval import voices
from eval.phonetic import speaker_split

needs_festival = pytest.mark.skipif(shutil.which("text2wave") is None, reason=f"festival is missing: {voices.INSTALL}")
TEXTS = ["The birch canoe slid on the smooth planks.", "Glue the sheet to the dark blue background.",
         "Please hang up and try again."]


@needs_festival
def test_every_voice_says_every_sentence_and_an_interrupted_build_resumes(tmp_path: Path) -> None:
    speakers = voices.available_voices()
    assert len(speakers) >= 2, f"festival has fewer than two English voices: {voices.INSTALL}"
    manifest = voices.build(TEXTS, tmp_path, quiet=True)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert len(rows) == len(TEXTS) * len(speakers)
    for speaker in speakers:
        assert [r["text"] for r in rows if r["speaker"] == speaker] == TEXTS
    for row in rows:
        info = sf.info(row["path"])
        assert info.samplerate == voices.SAMPLE_RATE_HZ and info.channels == 1
        assert 1.0 < row["duration_s"] == pytest.approx(info.frames / info.samplerate, abs=1e-3)
    first = Path(rows[0]["path"])
    written = first.stat().st_mtime_ns
    assert voices.build(TEXTS, tmp_path, speakers, quiet=True).read_text() == manifest.read_text()
    assert first.stat().st_mtime_ns == written  # kept, not synthesised again
    with pytest.raises(InputError, match="two voices"):
        voices.build(TEXTS, tmp_path, speakers[:1], quiet=True)


@needs_festival
def test_a_sentence_that_festival_cannot_say_is_left_out_for_every_voice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    speakers = voices.available_voices()
    manifest = voices.build(["... letters of your first name.", TEXTS[0]], tmp_path, speakers, quiet=True)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert {r["text"] for r in rows} == {TEXTS[0]} and len(rows) == len(speakers)  # festival 2.5 crashes on "..."
    assert "left out 1 of 2" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.glob("*/*.wav")) == sorted(Path(r["path"]).name for r in rows)


def test_parallel_rows_hold_out_the_same_sentences_for_every_speaker() -> None:
    rows = [{"path": f"/{s}/{i:04d}.wav", "speaker": s, "text": f"sentence {i}"} for s in ("a", "b", "c")
            for i in range(40)]
    train, test = speaker_split(rows, per_speaker=20)
    held_out = {s: {r["text"] for r in test if r["speaker"] == s} for s in ("a", "b", "c")}
    assert len(held_out["a"]) == 5 and held_out["a"] == held_out["b"] == held_out["c"]
    assert not held_out["a"] & {r["text"] for r in train}  # no held-out sentence is seen in training


def test_texts_come_from_a_manifest_once_each(tmp_path: Path) -> None:
    manifest = tmp_path / "texts.jsonl"
    rows = [{"path": "a.wav", "text": "One."}, {"path": "b.wav", "text": "One."}, {"path": "c.wav", "text": "... two."}]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert voices.read_texts(manifest) == ["One.", "two."] and voices.read_texts(manifest, 1) == ["One."]
    manifest.write_text(json.dumps({"path": "a.wav"}) + "\n")
    with pytest.raises(InputError, match="text"):
        voices.read_texts(manifest)
