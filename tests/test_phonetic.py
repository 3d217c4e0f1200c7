"""Phone alignment, phone purity and PNMI, the speaker probe, and the ``codec phonetic`` command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import DATA_DIR

from codec.cli import main
from codec.errors import InputError
from eval import alignment as alignment_lib
from eval.alignment import Aligner, Alignment, align_manifest, load_alignments, transcript_words
from eval.phonetic import half_width, phone_scores, probe_accuracy, speaker_split

CODEC2 = DATA_DIR / "codec2_speech_orig_16k_first2.7s.wav"
#: The first Harvard sentence (list 1), which the codec2 example recording reads.
CODEC2_TEXT = "The birch canoe slid on the smooth planks."
CODEC2_PHONES = ["DH", "AH", "B", "ER", "CH", "K", "AH", "N", "UW", "S", "L", "IH", "D", "AA", "N", "DH", "AH",
                 "S", "M", "UW", "DH", "P", "L", "AE", "NG", "K", "S"]


def test_real_alignment_follows_the_dictionary_and_covers_the_clip() -> None:
    alignment = Aligner().align(str(CODEC2), CODEC2_TEXT)
    assert not alignment.error
    phones = [p for p, _, _ in alignment.phones if p != "SIL"]
    assert len(phones) == len(CODEC2_PHONES)
    # "on" has two pronunciations (AA N, AO N); the aligner picks one
    assert [p for p, q in zip(phones, CODEC2_PHONES) if p != q] in ([], ["AO"])
    ends = [start + frames for _, start, frames in alignment.phones]
    assert [start for _, start, _ in alignment.phones[1:]] == ends[:-1]  # contiguous
    assert abs(ends[-1] * 0.01 - sf.info(str(CODEC2)).duration) < 0.05


def test_words_outside_the_dictionary_are_recorded_as_failures() -> None:
    assert transcript_words("That agent is already logged on.  Please ‘enter’ your agent's number!") == [
        "that", "agent", "is", "already", "logged", "on", "please", "enter", "your", "agent's", "number"]
    failed = Aligner().align(str(CODEC2), "the birch canoe zzqx")
    assert failed.error and "zzqx" in failed.error and not failed.phones


def test_a_transcript_too_long_for_the_audio_is_recorded_as_a_failure() -> None:
    failed = Aligner().align(str(CODEC2), "the birch canoe " * 30)  # 90 words cannot fit in 2.7 s
    assert failed.error.startswith("the aligner failed") and not failed.phones


def test_frame_labels_take_the_phone_at_each_frame_centre() -> None:
    alignment = Alignment("a.wav", (("SIL", 0, 3), ("AH", 3, 2), ("B", 5, 4)))  # 10 ms frames: 0-3, 3-5, 5-9
    # 50 Hz frames are centred at 10, 30, 50, 70, 90 ms: 10 ms frames 1, 3, 5, 7 and 9 (past the end)
    assert alignment.frame_labels(5, 50.0) == ["SIL", "AH", "B", "B", None]
    assert alignment.frame_labels(3, 100.0) == ["SIL", "SIL", "SIL"]


def test_alignment_cache_round_trip_aligns_each_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{"path": str(CODEC2), "text": CODEC2_TEXT}, {"path": str(CODEC2) + ".missing", "text": "zzqx"}]
    cache = tmp_path / "phones.jsonl"
    first = align_manifest(rows, cache, quiet=True)
    assert not first[str(CODEC2)].error and first[str(CODEC2) + ".missing"].error
    assert load_alignments(cache) == first
    monkeypatch.setattr(alignment_lib, "Aligner", lambda: pytest.fail("aligned again"))
    assert align_manifest(rows[:1], cache, quiet=True) == {str(CODEC2): first[str(CODEC2)]}
    with pytest.raises(InputError, match="not a phone alignment"):
        Alignment.from_json({"phones": [["AH", 0, 1]]})


def test_purity_and_pnmi_of_hand_made_labels() -> None:
    phones = np.array(["a", "a", "b", "b"])
    perfect = phone_scores(phones, np.array([7, 7, 3, 3]))
    assert (perfect.phone_purity, perfect.cluster_purity, perfect.pnmi) == pytest.approx((1, 1, 1))
    constant = phone_scores(phones, np.array([0, 0, 0, 0]))
    assert (constant.phone_purity, constant.cluster_purity, constant.pnmi) == pytest.approx((0.5, 1, 0))
    # p(a,0) = 1/2, p(a,1) = 1/4, p(b,1) = 1/4
    mixed = phone_scores(np.array(["a", "a", "a", "b"]), np.array([0, 0, 1, 1]))
    mutual = (0.5 * math.log(0.5 / (0.75 * 0.5)) + 0.25 * math.log(0.25 / (0.75 * 0.5))
              + 0.25 * math.log(0.25 / (0.25 * 0.5)))
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert (mixed.phone_purity, mixed.cluster_purity, mixed.pnmi) == pytest.approx((0.75, 0.75, mutual / entropy))
    with pytest.raises(InputError, match="as many"):
        phone_scores(phones, np.array([1, 2]))


def test_probe_separates_separable_speakers_and_not_random_labels() -> None:
    generator = torch.Generator().manual_seed(0)
    centres = 3 * torch.randn(3, 20, generator=generator)
    labels = torch.arange(3).repeat(40)  # [120]
    features = centres[labels] + torch.randn(120, 20, generator=generator)
    train, test = slice(0, 90), slice(90, 120)
    assert probe_accuracy(features[train], labels[train], features[test], labels[test]) == 1.0
    shuffled = labels[torch.randperm(120, generator=generator)]
    noise = torch.randn(120, 20, generator=generator)
    assert probe_accuracy(noise[train], shuffled[train], noise[test], shuffled[test]) < 0.7


def test_speaker_split_is_stable_holds_out_every_fourth_and_drops_small_speakers() -> None:
    rows = [{"path": f"/{s}/{i}.wav", "speaker": s} for s in ("a", "b") for i in range(12)]
    rows += [{"path": f"/c/{i}.wav", "speaker": "c"} for i in range(3)]
    train, test = speaker_split(rows, per_speaker=8)
    assert len(train) == 12 and len(test) == 4 and {r["speaker"] for r in train + test} == {"a", "b"}
    assert speaker_split(list(reversed(rows)), per_speaker=8) == (train, test)


def test_probe_half_width_shrinks_with_the_held_out_count() -> None:
    assert half_width(0.5, 16) == pytest.approx(0.245, abs=1e-3)  # 16 utterances: about +-0.25 around 0.5
    assert half_width(0.5, 256) == pytest.approx(0.06125, abs=1e-4) and half_width(1.0, 64) == 0.0


def test_phonetic_command_runs_on_an_untrained_preset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dev = []
    for speaker, clip in (("carlo", "asterisk_it_carlo_all-circuits-busy-now.wav"),
                          ("allison", "asterisk_es_allison_conf-hasjoin.wav")):
        audio, rate = sf.read(DATA_DIR / clip, dtype="float32")
        for i in range(8):  # eight 0.25 s utterances per speaker
            path = tmp_path / f"{speaker}{i}.wav"
            sf.write(path, audio[i * rate // 4 : (i + 1) * rate // 4], rate)
            dev.append({"path": str(path), "speaker": speaker})
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in dev))
    (tmp_path / "aligned.jsonl").write_text(json.dumps({"path": str(CODEC2), "text": CODEC2_TEXT}) + "\n")
    status = main(["phonetic", "--model", "preset:tiny", "--aligned", str(tmp_path / "aligned.jsonl"),
                   "--dev", str(tmp_path / "dev.jsonl"), "--json", str(tmp_path / "out.json"), "--quiet"])
    assert status == 0
    table = capsys.readouterr().out
    assert "2-4 mean" in table and "codebooks 2-4" in table and "1 of 1 files aligned" in table
    results = json.loads((tmp_path / "out.json").read_text())["preset:tiny"]
    assert set(results["phones"]) == {"1", "2", "3", "4", "2-4 mean"}
    assert all(0 <= s["pnmi"] <= 1 and 0 < s["phone_purity"] <= 1 for s in results["phones"].values())
    assert set(results["speaker"]) == {"codebook 1", "codebooks 2-4", "all codebooks", "chance", "held out"}
    held_out = results["speaker"]["held out"]
    assert held_out == len(dev) // 4 and f"{held_out:>8d}" in table and "±" in table
    assert (tmp_path / "aligned.phones.jsonl").is_file()
