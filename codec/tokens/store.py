"""The on-disk store of a tokenized dataset, and :class:`TokenDataset` that reads it.

    OUT_DIR/
      tokens.json                      the model (id, rates, n_q, codebook size)
      shards/p00-00000.safetensors     codes [n_q, total_frames] int16, offsets [n_items + 1] int64
      shards/p00-00000.jsonl           its manifest part, one line per item or failure
      manifest.jsonl                   every item: path, duration_s, samples, frames, shard, offset
      failures.jsonl                   every file that could not be tokenized, with the reason

Shard names are ``p{process}-{sequence}``. A shard is committed when its
manifest part exists: both are written atomically, the shard first, so a
killed run leaves either a committed pair or an orphan shard that the next
run deletes. Item ``i`` of a shard holds the frames
``codes[:, offsets[i] : offsets[i + 1]]``, which are also its manifest
``offset`` and ``offset + frames``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor
from torch.utils.data import Dataset

from codec.atomic import atomic_write, read_jsonl, write_json, write_jsonl
from codec.errors import FormatError, InputError
from codec.tokens.patterns import Vocabulary

INFO_FILE = "tokens.json"
MANIFEST_FILE = "manifest.jsonl"
FAILURES_FILE = "failures.jsonl"
SHARD_DIR = "shards"
_SHARD_NAME = re.compile(r"^p(\d+)-(\d+)\.(safetensors|jsonl)$")
_TEMP_NAME = re.compile(r"^\.p(\d+)-\d+\..*\.tmp$")  # left by an atomic write that was killed


def shard_name(process_index: int, sequence: int) -> str:
    """File stem of shard ``sequence`` of process ``process_index``, e.g. ``p01-00007``."""
    return f"p{process_index:02d}-{sequence:05d}"


def read_info(root: Path) -> dict[str, Any]:
    """The ``tokens.json`` of a token directory.

    Raises:
        InputError: If ``root`` is not a token directory.
    """
    path = Path(root) / INFO_FILE
    if not path.is_file():
        raise InputError(f"{root} is not a token directory (no {INFO_FILE}); make one with `codec tokenize`")
    return json.loads(path.read_text(encoding="utf-8"))


def write_info(root: Path, info: dict[str, Any]) -> None:
    """Writes the ``tokens.json`` of a token directory atomically."""
    write_json(Path(root) / INFO_FILE, info)


def commit_shard(
    root: Path, name: str, codes: list[Tensor], records: list[dict[str, Any]], failures: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Writes a shard and then its manifest part, each atomically.

    Args:
        root: The token directory.
        name: Shard stem from :func:`shard_name`.
        codes: Codes of each item, ``[n_q, F_i]``.
        records: Manifest lines of the same items (without shard and offset).
        failures: ``{"path", "error"}`` lines of files that failed since the last shard.

    Returns:
        The manifest lines written, with ``shard`` and ``offset`` filled in.
    """
    shard_dir = Path(root) / SHARD_DIR
    shard_dir.mkdir(parents=True, exist_ok=True)
    lines = list(failures)
    if codes:
        lengths = torch.tensor([0] + [c.shape[-1] for c in codes])
        offsets = lengths.cumsum(0)  # [n_items + 1]
        tensors = {"codes": torch.cat(codes, dim=-1).to(torch.int16).contiguous(), "offsets": offsets}
        atomic_write(shard_dir / f"{name}.safetensors", lambda p: save_file(tensors, p))
        shard = f"{SHARD_DIR}/{name}.safetensors"
        lines += [{**r, "shard": shard, "offset": int(o)} for r, o in zip(records, offsets[:-1], strict=True)]
    write_jsonl(shard_dir / f"{name}.jsonl", lines)
    return lines


def committed_lines(root: Path) -> list[dict[str, Any]]:
    """Every line of every committed manifest part (items and failures), in shard order."""
    shard_dir = Path(root) / SHARD_DIR
    if not shard_dir.is_dir():
        return []
    lines: list[dict[str, Any]] = []
    for part in sorted(shard_dir.glob("p*.jsonl")):
        if _SHARD_NAME.match(part.name):
            lines += read_jsonl(part)
    return lines


def next_sequence(root: Path, process_index: int) -> int:
    """The first shard sequence number of ``process_index`` that no file uses yet."""
    used = [int(m.group(2)) for m in _shard_matches(root) if int(m.group(1)) == process_index]
    return max(used, default=-1) + 1


def remove_orphans(root: Path, process_index: int, num_processes: int) -> list[str]:
    """Deletes shards without a manifest part, and temporary files, of the processes this one stands for.

    Process ``r`` cleans the files of every former process ``p`` with
    ``p % num_processes == r``, so no two processes touch the same files.

    Returns:
        Names of the deleted files.
    """
    shard_dir = Path(root) / SHARD_DIR
    removed = []
    for path in sorted(shard_dir.glob("*")) if shard_dir.is_dir() else []:
        temp, shard = _TEMP_NAME.match(path.name), _SHARD_NAME.match(path.name)
        named = temp or shard
        if not named or int(named.group(1)) % num_processes != process_index:
            continue
        orphan = shard and shard.group(3) == "safetensors" and not path.with_suffix(".jsonl").exists()
        if temp or orphan:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            removed.append(path.name)
    return removed


def _shard_matches(root: Path) -> list[re.Match[str]]:
    shard_dir = Path(root) / SHARD_DIR
    names = [p.name for p in shard_dir.iterdir()] if shard_dir.is_dir() else []
    return [m for m in map(_SHARD_NAME.match, names) if m]


class TokenDataset(Dataset):
    """Code tensors of a token directory written by ``codec tokenize``.

    Item ``i`` is the codes of manifest line ``i``, ``[n_q, F]`` int64,
    read lazily from its memory-mapped shard.

    Args:
        root: The token directory (holding ``tokens.json`` and ``manifest.jsonl``).
        max_frames: If given, items longer than this are cropped to this many frames.
        n_q: If given, only the first ``n_q`` codebooks.
        random_crop: Crop at a random start (else at the first frame).

    Raises:
        InputError: If ``root`` is not a finished token directory or ``n_q``/``max_frames`` is out of range.
    """

    def __init__(
        self, root: str | Path, max_frames: int | None = None, n_q: int | None = None, random_crop: bool = True
    ) -> None:
        self.root = Path(root)
        self.info = read_info(self.root)
        manifest = self.root / MANIFEST_FILE
        if not manifest.is_file():
            raise InputError(
                f"{self.root} has no {MANIFEST_FILE}: the tokenization did not finish; run `codec tokenize` again "
                "with the same arguments to complete it"
            )
        self.items = read_jsonl(manifest)
        available = int(self.info["n_q"])
        if n_q is not None and not 1 <= n_q <= available:
            raise InputError(f"n_q must be in 1..{available} (the codebooks stored), got {n_q}")
        if max_frames is not None and max_frames < 1:
            raise InputError(f"max_frames must be positive, got {max_frames}")
        self.n_q = n_q or available
        self.max_frames = max_frames
        self.random_crop = random_crop
        self._shards: dict[str, Any] = {}

    @property
    def vocabulary(self) -> Vocabulary:
        """The token vocabulary of the codes this dataset yields (see :mod:`codec.tokens.patterns`)."""
        return Vocabulary(n_q=self.n_q, codebook_size=int(self.info["codebook_size"]))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Tensor:
        """Codes ``[n_q, F]`` (int64) of item ``index``, cropped to ``max_frames``."""
        item = self.items[index]
        start, frames = int(item["offset"]), int(item["frames"])
        if self.max_frames is not None and frames > self.max_frames:
            skip = int(torch.randint(frames - self.max_frames + 1, ())) if self.random_crop else 0
            start, frames = start + skip, self.max_frames
        codes = self._shard(item["shard"]).get_slice("codes")[: self.n_q, start : start + frames]
        return codes.long()

    def __getstate__(self) -> dict[str, Any]:
        """Pickles without the open shard handles (for DataLoader workers started by spawn)."""
        return {**self.__dict__, "_shards": {}}

    def _shard(self, name: str) -> Any:
        if name not in self._shards:
            path = self.root / name
            if not path.is_file():
                raise FormatError(f"shard {path} named in {MANIFEST_FILE} is missing")
            self._shards[name] = safe_open(str(path), framework="pt")
        return self._shards[name]
