"""Training data: random fixed-length crops of audio files, in a reproducible order.

Sources are folders (searched recursively), manifests (``.txt`` with one path
per line, ``.jsonl`` with ``path``; both listed by :func:`codec.sources.list_audio`)
or WebDataset tar shards. Files are probed once at start; unreadable or too-short files are
skipped with one warning that counts them.

Which file and which crop a step sees is a pure function of ``(seed,
position)`` (:class:`StepSampler`), so a resumed run sees exactly the batches
the uninterrupted run would have seen, with any number of workers.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset, IterableDataset, Sampler

from codec.audio import fit_length, resample
from codec.errors import InputError
from codec.sources import AUDIO_SUFFIXES, list_audio, read_manifest
from train.config import DataConfig

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class AudioEntry:
    """One usable audio file: its path, sample rate, frames and channels."""

    path: str
    sample_rate: int
    frames: int
    channels: int

    @property
    def duration_s(self) -> float:
        """Duration in seconds."""
        return self.frames / self.sample_rate


def probe(paths: list[str], min_duration_s: float) -> list[AudioEntry]:
    """Reads each file's header; skips unreadable or too-short files with one warning."""
    entries, unreadable, short = [], 0, 0
    for p in paths:
        try:
            info = sf.info(p)
        except (sf.LibsndfileError, RuntimeError, OSError):
            unreadable += 1
            continue
        if info.frames <= 0 or info.frames / info.samplerate < min_duration_s:
            short += 1
            continue
        entries.append(AudioEntry(p, info.samplerate, info.frames, info.channels))
    if unreadable or short:
        warnings.warn(
            f"skipped {unreadable} unreadable and {short} too short (< {min_duration_s} s) "
            f"of {len(paths)} audio files",
            stacklevel=2,
        )
    return entries


def is_held_out(path: str, fraction: float) -> bool:
    """Deterministic split: whether ``path`` falls in the held-out ``fraction``."""
    digest = hashlib.sha1(path.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def to_channels(wav: np.ndarray, channel: str, rng: np.random.Generator) -> np.ndarray:
    """``[T, C]`` samples to mono ``[T]``: ``"mix"`` averages, ``"random"`` picks one channel."""
    if channel == "mix":
        return wav.mean(axis=1)
    if channel == "random":
        return wav[:, rng.integers(wav.shape[1])]
    raise InputError(f"data.channel must be 'mix' or 'random', got {channel!r}")


def apply_gain(wav: torch.Tensor, gain_db: float, rng: np.random.Generator) -> torch.Tensor:
    """Random gain in ±``gain_db``; the peak is kept below 1."""
    if gain_db > 0:
        wav = wav * 10 ** (rng.uniform(-gain_db, gain_db) / 20)
    peak = float(wav.abs().max())
    return wav * (0.99 / peak) if peak > 0.99 else wav


class FrameTargets(Protocol):
    """Per-frame training targets of each file (e.g. :class:`train.semantic.TargetCache`)."""

    hop_length: int

    def frames(self, path: str, first: int, count: int) -> torch.Tensor:
        """Targets of frames ``first .. first + count - 1`` of ``path``: ``[..., count, D]``."""


class CropDataset(Dataset):
    """Random crops of ``segment`` samples at ``sample_rate``.

    Items are indexed by ``(entry_index, crop_seed)`` pairs from
    :class:`StepSampler`; the crop and gain depend only on the seed.

    Args:
        entries: Probed audio files.
        sample_rate: Model rate; crops are resampled to it.
        config: Crop settings.
        targets: If given, crops start on frame boundaries (multiples of its
            ``hop_length`` at ``sample_rate``) and each item is ``(crop, the
            targets of its frames)``.
        speakers: With ``targets``, the speaker index of each file path; each
            item then ends with its file's index (a 0-d tensor, -1 for a file
            not in it).
    """

    def __init__(
        self, entries: list[AudioEntry], sample_rate: int, config: DataConfig, targets: FrameTargets | None = None,
        speakers: dict[str, int] | None = None,
    ) -> None:
        if not entries:
            raise InputError("no usable training audio: check data.train (folders or manifests)")
        self.entries = entries
        self.sample_rate = sample_rate
        self.config = config
        self.segment = round(config.segment_s * sample_rate)
        self.targets = targets
        self.speakers = speakers
        self.failures = 0

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, item: tuple[int, int]) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Crop ``[1, segment]`` of entry ``item[0]`` chosen by seed ``item[1]`` (and its targets ``[..., F, D]``
        and speaker index)."""
        index, seed = item
        rng = np.random.default_rng(seed)
        for attempt in range(len(self.entries)):
            entry = self.entries[(index + attempt) % len(self.entries)]
            try:
                wav, first_frame = self._crop(entry, rng)
                break
            except (sf.LibsndfileError, RuntimeError, OSError) as e:
                self.failures += 1
                if self.failures == 1:
                    log.warning("unreadable training file %s (%s); using the next file", entry.path, e)
        else:
            raise InputError("no training file could be read")
        wav = apply_gain(wav, self.config.gain_db, rng)
        if self.targets is None:
            return wav
        target = self.targets.frames(entry.path, first_frame, self.segment // self.targets.hop_length)
        if self.speakers is None:
            return wav, target
        return wav, target, torch.tensor(self.speakers.get(entry.path, -1))

    def _crop(self, entry: AudioEntry, rng: np.random.Generator) -> tuple[torch.Tensor, int]:
        """A crop ``[1, segment]`` and its first frame (0 without targets)."""
        src_len = math.ceil(self.segment * entry.sample_rate / self.sample_rate)
        first_frame = 0
        if self.targets is None:
            start = int(rng.integers(0, max(entry.frames - src_len, 0) + 1))
        else:  # a whole number of frames in, rounded to the file's nearest sample
            hop = self.targets.hop_length * entry.sample_rate / self.sample_rate
            first_frame = int(rng.integers(0, max(math.floor((entry.frames - src_len) / hop), 0) + 1))
            start = round(first_frame * hop)
        data, _ = sf.read(entry.path, start=start, frames=src_len, dtype="float32", always_2d=True)
        wav = torch.from_numpy(to_channels(data, self.config.channel, rng).copy())[None]  # [1, T]
        wav = resample(wav, entry.sample_rate, self.sample_rate)
        return fit_length(wav, self.segment), first_frame


class StepSampler(Sampler):
    """Infinite, resumable order of ``(entry_index, crop_seed)`` items.

    Position ``p`` (counted over all processes) maps to epoch ``p // n`` whose
    permutation is seeded by ``(seed, epoch)``. Process ``rank`` of ``world``
    takes positions ``start + rank, start + rank + world, ...``.

    Args:
        n_items: Number of entries.
        seed: Run seed.
        start: First position (``step * batch_size * world`` when resuming).
        rank: This process's index.
        world: Number of processes.
    """

    def __init__(self, n_items: int, seed: int, start: int = 0, rank: int = 0, world: int = 1) -> None:
        self.n_items, self.seed, self.start, self.rank, self.world = n_items, seed, start, rank, world

    def __iter__(self) -> Iterator[tuple[int, int]]:
        position = self.start + self.rank
        epoch, perm = -1, None
        while True:
            if position // self.n_items != epoch:
                epoch = position // self.n_items
                perm = torch.randperm(self.n_items, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
            yield int(perm[position % self.n_items]), self.seed * 1_000_003 + position
            position += self.world


class ShardDataset(IterableDataset):
    """Random crops from WebDataset tar shards (each sample's audio under any audio extension).

    For corpora larger than a disk. Shards are split between processes and
    workers by WebDataset; the order is shuffled, so a resumed run continues
    with fresh (not identical) batches.

    Args:
        urls: Shard paths or brace patterns (``data/shard-{000..099}.tar``).
        sample_rate: Model rate.
        config: Crop settings.
        seed: Shuffle seed.
    """

    def __init__(self, urls: list[str], sample_rate: int, config: DataConfig, seed: int) -> None:
        import webdataset as wds  # optional: only shard training needs it

        self.segment = round(config.segment_s * sample_rate)
        self.sample_rate, self.config, self.seed = sample_rate, config, seed
        self.pipeline = (
            wds.WebDataset(urls, shardshuffle=100, nodesplitter=wds.split_by_node, seed=seed)
            .shuffle(500)
            .to_tuple("__key__", *[f"{s[1:]}" for s in sorted(AUDIO_SUFFIXES)], missing_is_error=False)
        )

    def __iter__(self) -> Iterator[torch.Tensor]:
        rng = np.random.default_rng(self.seed)
        for _key, *blobs in self.pipeline.repeat():
            blob = next((b for b in blobs if b is not None), None)
            if blob is None:
                continue
            try:
                data, rate = sf.read(io.BytesIO(blob), dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError):
                continue
            if data.shape[0] < self.config.min_duration_s * rate:
                continue
            wav = resample(torch.from_numpy(to_channels(data, self.config.channel, rng).copy())[None], rate,
                           self.sample_rate)
            start = int(rng.integers(0, max(wav.shape[-1] - self.segment, 0) + 1))
            yield apply_gain(fit_length(wav[..., start:], self.segment), self.config.gain_db, rng)


def is_shard_source(source: str) -> bool:
    """Whether a data source names WebDataset shards."""
    return source.endswith(".tar") or ".tar" in source and "{" in source


def split_entries(config: DataConfig) -> tuple[list[AudioEntry], list[AudioEntry]]:
    """Probed training and validation entries from the file sources of ``config``."""
    train_paths = [str(p) for s in config.train if not is_shard_source(s) for p in list_audio(s)]
    if config.valid:
        valid_paths = [str(p) for s in config.valid for p in list_audio(s)]
    else:
        valid_paths = [p for p in train_paths if is_held_out(p, config.valid_fraction)]
        train_paths = [p for p in train_paths if not is_held_out(p, config.valid_fraction)]
    return probe(train_paths, config.min_duration_s), probe(valid_paths, config.min_duration_s)


def manifest_speakers(sources: list[str]) -> dict[str, str]:
    """The ``"speaker"`` of each file listed in the JSON Lines manifests among ``sources``, by the path that
    :func:`codec.sources.list_audio` gives it (files of folders and rows without the key have none)."""
    speakers = {}
    for source in sources:
        path = Path(source).expanduser()
        if path.is_file() and path.suffix.lower() == ".jsonl":
            for entry in read_manifest(path):
                if isinstance(entry.row.get("speaker"), str):
                    speakers[str(entry.path)] = entry.row["speaker"]
    return speakers


def load_excerpt(entry: AudioEntry, sample_rate: int, seconds: float, channel: str = "mix") -> torch.Tensor:
    """The first ``seconds`` of a file, mono at ``sample_rate``: ``[1, T]``."""
    data, _ = sf.read(entry.path, frames=round(seconds * entry.sample_rate), dtype="float32", always_2d=True)
    wav = torch.from_numpy(to_channels(data, channel, np.random.default_rng(0)).copy())[None]
    return resample(wav, entry.sample_rate, sample_rate)
