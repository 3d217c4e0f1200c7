"""Listing audio in bulk: one list of endings and one manifest reading for every command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import DATA_DIR, data_wavs

from codec.errors import FormatError, InputError
from codec.sources import AUDIO_SUFFIXES, find_audio, list_audio, read_manifest
from codec.tokens.tokenize import list_inputs


def test_manifests_and_folders_list_the_same_files(tmp_path: Path) -> None:
    files = list_audio(DATA_DIR)
    assert files and all(f.is_file() and f.suffix in AUDIO_SUFFIXES for f in files)
    (tmp_path / "list.txt").write_text("\n".join(map(str, files)) + "\n")
    (tmp_path / "list.jsonl").write_text("".join(json.dumps({"path": str(f), "duration_s": 1.0}) + "\n" for f in files))
    assert list_audio(tmp_path / "list.txt") == files
    assert list_audio(str(tmp_path / "list.jsonl")) == files
    assert list_audio(files[0]) == [files[0]]  # one audio file


def test_every_command_lists_the_same_files_of_a_folder(tmp_path: Path) -> None:
    wav = data_wavs(channels=1)[0]
    for name in ("a.wav", "b.FLAC", "sub/c.opus", "sub/d.oga", "notes.txt", "e.wav.bak"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        shutil.copy(wav, tmp_path / name)  # only the name matters for listing
    expected = [tmp_path / "a.wav", tmp_path / "b.FLAC", tmp_path / "sub/c.opus", tmp_path / "sub/d.oga"]
    assert find_audio(tmp_path) == list_audio(tmp_path) == expected
    assert [item.source for item in list_inputs(tmp_path)] == expected  # codec tokenize
    assert [item.path for item in list_inputs(tmp_path)] == ["a.wav", "b.FLAC", "sub/c.opus", "sub/d.oga"]


def test_manifest_paths_resolve_against_the_manifest(tmp_path: Path) -> None:
    wavs = data_wavs(channels=1)[:2]
    (tmp_path / "a.wav").symlink_to(wavs[0])
    manifest = tmp_path / "clips.jsonl"
    rows = [{"path": "a.wav", "speaker": "x"}, {"path": str(wavs[1])}]
    manifest.write_text(json.dumps(rows[0]) + "\n\n" + json.dumps(rows[1]) + "\n")
    assert list_audio(manifest) == [tmp_path / "a.wav", wavs[1]]
    assert list_audio(manifest, limit=1) == [tmp_path / "a.wav"]
    entries = read_manifest(manifest)
    assert [(e.name, e.row) for e in entries] == [("a.wav", rows[0]), (str(wavs[1]), rows[1])]
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "list.txt").write_text("../a.wav\n\n")
    assert list_audio(tmp_path / "sub" / "list.txt") == [tmp_path / "sub" / ".." / "a.wav"]


def test_bad_sources_raise_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "clips.jsonl").write_text('{"path": "a.wav"}\n{"file": "a.wav"}\n')
    with pytest.raises(InputError, match='clips.jsonl:2: expected a JSON object with a "path" key'):
        list_audio(tmp_path / "clips.jsonl")
    (tmp_path / "broken.jsonl").write_text('{"path": \n')
    with pytest.raises(FormatError, match="broken.jsonl:1: not valid JSON"):
        list_audio(tmp_path / "broken.jsonl")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no audio files"):
        list_audio(tmp_path / "empty")
    with pytest.raises(InputError, match="neither a folder nor a manifest"):
        list_audio(tmp_path / "missing")
    (tmp_path / "notes.csv").write_text("a.wav\n")
    with pytest.raises(InputError, match="neither a folder nor a manifest"):
        list_audio(tmp_path / "notes.csv")


def test_a_limit_below_one_is_an_error_not_every_file() -> None:
    with pytest.raises(InputError, match="--limit must be at least 1, got 0"):
        list_audio(DATA_DIR, limit=0)
