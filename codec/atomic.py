"""Atomic file writes: readers see the old file or the whole new one, never a part.

Every output of the package (models, audio, compressed files, token shards,
manifests) is written to a temporary file in the destination's folder and
renamed over the destination only once it is complete; on any failure,
Ctrl-C included, the temporary file is removed and the destination is left
as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from codec.errors import FormatError


def _default_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[str]:
    """Yields a temporary path next to ``path``; renames it onto ``path`` if the block succeeds.

    The file gets the permissions a plain ``open(path, "w")`` would give it.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, _default_mode())  # after writing: some writers recreate the file with mode 0600
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_write(path: str | Path, write: Callable[[str], object]) -> None:
    """Calls ``write(tmp_path)`` and then renames the result onto ``path`` (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        write(tmp)


def write_json(path: str | Path, data: object) -> None:
    """Writes ``data`` as indented JSON to ``path``, atomically."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2) + "\n"))


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Writes one JSON object per line (UTF-8, non-ASCII kept) to ``path``, atomically and flushed to disk.

    ``rows`` may be a generator: it is consumed while writing.
    """

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` of each non-blank line of ``path``, numbered from 1.

    Raises:
        FormatError: If a line is not a JSON object; the message names the file and line.
    """
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise FormatError(f"{path}:{number}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise FormatError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        yield number, row


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects of the lines of ``path`` (blank lines skipped; see :func:`iter_jsonl`).

    Raises:
        FormatError: If a line is not a JSON object; the message names the file and line.
    """
    return [row for _, row in iter_jsonl(path)]
