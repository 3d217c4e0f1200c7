"""Where audio comes from in bulk: a folder of audio files, a manifest that lists them, or one file.

Every command that reads many files (``codec tokenize``, ``codec train``,
``codec eval``, ``codec codebooks``, ...) lists them here, with one list of
file name endings (:data:`AUDIO_SUFFIXES`), so one folder gives the same
files to all of them.

Manifests:

- ``.jsonl``: one JSON object per line with a ``"path"``; other keys
  (``speaker``, ``duration_s``, ``text``, ...) are kept in
  :attr:`ManifestEntry.row`;
- ``.txt``: one path per line.

A relative path in a manifest is taken from the manifest's folder, so a
manifest and its audio can move together.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codec.atomic import iter_jsonl
from codec.errors import InputError

#: File name endings taken from a folder (the formats libsndfile reads), compared in lower case.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au")
#: File name endings of manifests.
MANIFEST_SUFFIXES = (".jsonl", ".txt")


@dataclass(frozen=True)
class ManifestEntry:
    """One line of a manifest.

    Attributes:
        name: The path as written in the manifest.
        path: The file: ``name`` taken from the manifest's folder when relative.
        row: The whole JSON object (``{"path": name}`` for a ``.txt`` line).
    """

    name: str
    path: Path
    row: dict[str, Any]


def is_audio_file(path: str | Path) -> bool:
    """Whether ``path`` ends in one of :data:`AUDIO_SUFFIXES` (any case)."""
    return Path(path).suffix.lower() in AUDIO_SUFFIXES


def find_audio(folder: str | Path) -> list[Path]:
    """The audio files under ``folder``, searched recursively, sorted by path."""
    return sorted(p for p in Path(folder).rglob("*") if is_audio_file(p) and p.is_file())


def read_manifest(manifest: str | Path) -> list[ManifestEntry]:
    """The entries of a manifest: ``.txt`` one path per line, anything else JSON Lines with ``"path"``.

    Raises:
        InputError: If a JSON line has no ``"path"`` string (the message names the line).
        FormatError: If a line of a JSON Lines manifest is not a JSON object.
    """
    manifest = Path(manifest)
    if manifest.suffix.lower() == ".txt":
        lines = [line.strip() for line in manifest.read_text(encoding="utf-8").splitlines()]
        rows = [(number, {"path": line}) for number, line in enumerate(lines, start=1) if line]
    else:
        rows = list(iter_jsonl(manifest))
    entries = []
    for number, row in rows:
        name = row.get("path")
        if not isinstance(name, str) or not name:
            raise InputError(f'{manifest}:{number}: expected a JSON object with a "path" key')
        entries.append(ManifestEntry(name, manifest.parent / Path(name).expanduser(), row))
    return entries


def check_limit(limit: int | None) -> None:
    """Checks a ``--limit`` of files: None (all) or at least 1.

    Raises:
        InputError: If ``limit`` is below 1.
    """
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be at least 1, got {limit}")


def list_audio(source: str | Path, limit: int | None = None) -> list[Path]:
    """The audio files of a folder (recursive, sorted), of a manifest (in its order), or one audio file.

    Args:
        source: A folder, a ``.jsonl`` or ``.txt`` manifest, or an audio file;
            ``~`` is expanded.
        limit: Keep only the first ``limit`` files (all when None).

    Raises:
        InputError: If ``source`` is none of these, a manifest line is
            malformed, no audio file is found, or ``limit`` is below 1.
    """
    check_limit(limit)
    path = Path(source).expanduser()
    if path.is_dir():
        files = find_audio(path)
    elif path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        files = [entry.path for entry in read_manifest(path)]
    elif path.is_file() and is_audio_file(path):
        files = [path]
    else:
        raise InputError(
            f"{source} is neither a folder nor a manifest ({', '.join(MANIFEST_SUFFIXES)}) nor an audio file "
            f"({', '.join(AUDIO_SUFFIXES)})"
        )
    if not files:
        raise InputError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) found in {source}")
    return files[:limit]
