"""Atomic JSON Lines files: well formed, replaced whole, never left half written."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from codec.atomic import read_jsonl, write_jsonl
from codec.errors import FormatError


def test_write_jsonl_is_well_formed_and_leaves_no_temp(tmp_path: Path) -> None:
    rows = [{"path": "/a.wav", "duration_s": 1.5, "speaker": "gcin-voice5", "text": "ㄊㄢ"}, {"path": "/b.wav"}]
    path = tmp_path / "train.jsonl"
    write_jsonl(path, rows)
    assert "ㄊㄢ" in path.read_text(encoding="utf-8")  # non-ASCII kept as written
    assert read_jsonl(path) == rows
    write_jsonl(path, iter(rows[:1]))  # replaces, never appends; a generator is fine
    assert [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] == rows[:1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.jsonl"]


def test_write_jsonl_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    path = tmp_path / "dev.jsonl"
    write_jsonl(path, [{"a": 1}])

    def broken_rows() -> Iterator[dict[str, int]]:
        yield {"a": 2}
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_jsonl(path, broken_rows())
    assert path.read_text() == '{"a": 1}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dev.jsonl"]


@pytest.mark.parametrize(
    ("text", "message"),
    [('{"a": 1}\n{"a": \n', r"bad\.jsonl:2: not valid JSON"), ('\n[1, 2]\n', r"bad\.jsonl:2: expected a JSON object")],
    ids=["broken-line", "not-an-object"],
)
def test_read_jsonl_names_the_bad_line(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "bad.jsonl").write_text(text)
    with pytest.raises(FormatError, match=message):
        read_jsonl(tmp_path / "bad.jsonl")
