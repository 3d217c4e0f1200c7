"""Phone alignments of transcribed English speech, by pocketsphinx's forced aligner, cached in a JSONL file.

The ``pocketsphinx`` wheel (5.x) ships a US English acoustic model and the
CMU dictionary; aligning a transcript gives phone segments in 10 ms frames.
Transcripts with a word outside the dictionary (digits, names) cannot be
aligned and are recorded as failures, so that each file is tried once.

Cache lines::

    {"path": "/a.wav", "phones": [["SIL", 0, 12], ["DH", 12, 4], ...]}   # phone, start frame, frames
    {"path": "/b.wav", "error": "word not in the dictionary: 'xyz'"}
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from codec.atomic import read_jsonl, write_jsonl
from codec.audio import load
from codec.errors import CodecError, InputError

#: pocketsphinx's frame: 10 ms.
PHONE_FRAME_S = 0.01
#: The rate of pocketsphinx's en-us acoustic model.
ALIGNER_RATE_HZ = 16000


@dataclass(frozen=True)
class Alignment:
    """Phone segments of one file: ``(phone, start frame, frames)`` in 10 ms frames, or why there are none."""

    path: str
    phones: tuple[tuple[str, int, int], ...] = ()
    error: str = ""

    def to_json(self) -> dict:
        """One cache line."""
        return {"path": self.path, "error": self.error} if self.error else {"path": self.path, "phones": self.phones}

    @classmethod
    def from_json(cls, row: dict) -> Alignment:
        """Parses one cache line.

        Raises:
            InputError: If the line is not an alignment.
        """
        try:
            phones = tuple((str(p), int(s), int(n)) for p, s, n in row.get("phones", ()))
            return cls(str(row["path"]), phones, str(row.get("error", "")))
        except (KeyError, TypeError, ValueError):
            raise InputError(f"not a phone alignment: {json.dumps(row)[:200]}") from None

    def frame_labels(self, n_frames: int, frame_rate_hz: float) -> list[str | None]:
        """The phone at the centre of each of ``n_frames`` frames at ``frame_rate_hz`` (``None`` past the alignment)."""
        end = max((start + frames for _, start, frames in self.phones), default=0)
        per_10ms: list[str | None] = [None] * end
        for phone, start, frames in self.phones:
            per_10ms[start : start + frames] = [phone] * frames
        centres = ((np.arange(n_frames) + 0.5) / frame_rate_hz / PHONE_FRAME_S).astype(int)
        return [per_10ms[c] if c < end else None for c in centres]


def transcript_words(text: str) -> list[str]:
    """Lower-case dictionary words of a transcript: punctuation dropped, apostrophes kept."""
    words = re.sub(r"[^a-z']+", " ", text.lower().replace("’", "'")).split()
    return [w.strip("'") for w in words if w.strip("'")]


class Aligner:
    """pocketsphinx's US English forced aligner.

    Raises:
        CodecError: If pocketsphinx is not installed.
    """

    def __init__(self) -> None:
        try:
            from pocketsphinx import Decoder
        except ImportError:
            raise CodecError("phone alignment needs pocketsphinx: pip install 'rvq-codec[semantic]'") from None
        self.decoder = Decoder(samprate=ALIGNER_RATE_HZ, bestpath=False, loglevel="FATAL")

    def align(self, path: str, text: str) -> Alignment:
        """Aligns the transcript ``text`` to the audio file ``path`` (any rate; resampled to 16 kHz mono)."""
        words = transcript_words(text)
        unknown = [w for w in words if self.decoder.lookup_word(w) is None]
        if unknown or not words:
            return Alignment(path, error=f"words not in the dictionary: {unknown}" if unknown else "empty transcript")
        wav, _ = load(path, target_rate=ALIGNER_RATE_HZ, mono=True)
        pcm = (wav[0].clamp(-1, 1) * 32767).short().numpy().tobytes()
        try:
            self.decoder.set_align_text(" ".join(words))
            self._decode(pcm)  # first pass: word segmentation
            self.decoder.set_alignment()  # fails when the first pass found no word path
            self._decode(pcm)  # second pass: phone and state alignment
            alignment = self.decoder.get_alignment()
        except RuntimeError as e:
            return Alignment(path, error=f"the aligner failed: {e}")
        if alignment is None:
            return Alignment(path, error="the aligner found no alignment")
        phones = tuple((phone.name, int(phone.start), int(phone.duration)) for word in alignment for phone in word)
        return Alignment(path, phones) if phones else Alignment(path, error="the aligner found no alignment")

    def _decode(self, pcm: bytes) -> None:
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()


def load_alignments(cache: Path) -> dict[str, Alignment]:
    """The alignments cached in ``cache`` by path (empty if the file does not exist)."""
    if not cache.is_file():
        return {}
    return {a.path: a for a in map(Alignment.from_json, read_jsonl(cache))}


def align_manifest(items: list[dict], cache: Path, quiet: bool = False) -> dict[str, Alignment]:
    """Alignments of manifest rows (``path`` and ``text``), aligning only those not in ``cache`` and adding them.

    Raises:
        InputError: If a row has no ``text``.
    """
    done = load_alignments(cache)
    todo = [row for row in items if row["path"] not in done]
    if todo:
        if any("text" not in row for row in todo):
            raise InputError("phone alignment needs a transcript: every manifest line needs a \"text\" key")
        aligner = Aligner()
        for row in tqdm(todo, desc="aligning phones", unit="file", disable=quiet):
            done[row["path"]] = aligner.align(row["path"], row["text"])
        write_jsonl(cache, (a.to_json() for a in done.values()))
    return {row["path"]: done[row["path"]] for row in items}
