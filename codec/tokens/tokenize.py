"""Acoustic tokens for language models: ``codec tokenize`` and ``codec detokenize``.

``codec tokenize INPUT OUT_DIR`` encodes every audio file of a folder (or of
a JSONL manifest with a ``path`` per line) to codes ``[n_q, F]`` and stores
them in safetensors shards with a JSONL manifest (layout in
:mod:`codec.tokens.store`); :class:`TokenDataset` reads them back for training
and ``codec detokenize`` decodes them to WAV files.

- Batches hold files of similar length, padded and encoded with their
  lengths, which gives the codes of encoding each file alone up to float
  rounding: PyTorch's CPU convolution and LSTM kernels round differently for
  different batch sizes and lengths, moving the latent by about 1e-7, which
  can flip a code only at a near tie (none flipped on the test clips).
- Every file is resampled to the model rate; for a mono model its channels
  are mixed down (the mean), for a multichannel model the file must have the
  model's channel count.
- A file that cannot be read is recorded in ``failures.jsonl`` with the
  reason and the run goes on.
- Resumable: shards are committed with their manifest part; a new run with
  the same arguments skips the files already in committed shards (failed
  files are tried again).
- Several processes or GPUs: ``accelerate launch -m codec.cli tokenize ...``.
  Process ``r`` of ``n`` takes the files ``r, r + n, r + 2n, ...`` of the
  sorted list and writes shards named ``p{r}-*``; the last one to finish
  writes ``manifest.jsonl``. Without ``accelerate launch`` one process does all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from codec import audio
from codec.atomic import write_jsonl
from codec.errors import InputError, ModelMismatchError
from codec.network.model import Codec
from codec.sources import AUDIO_SUFFIXES, find_audio, read_manifest
from codec.tokens.store import (
    FAILURES_FILE,
    INFO_FILE,
    MANIFEST_FILE,
    TokenDataset,
    commit_shard,
    committed_lines,
    next_sequence,
    read_info,
    remove_orphans,
    shard_name,
    write_info,
)

__all__ = ["TokenDataset", "TokenizeSummary", "detokenize", "list_inputs", "plan_batches", "tokenize"]

@dataclass(frozen=True)
class Item:
    """One input file.

    Attributes:
        path: Its name in the manifest: relative to the input folder, or as
            written in the input manifest.
        source: The file to read.
    """

    path: str
    source: Path


def list_inputs(input_path: str | Path) -> list[Item]:
    """The audio files of a folder (recursively, sorted) or of a manifest (:func:`codec.sources.read_manifest`).

    An item's name is its path below the folder, or its path as written in
    the manifest; a relative manifest path is taken from the manifest's folder.

    Raises:
        InputError: If the input does not exist, holds no audio, or repeats a path.
    """
    input_path = Path(input_path)
    if input_path.is_dir():
        items = [Item(p.relative_to(input_path).as_posix(), p) for p in find_audio(input_path)]
    elif input_path.is_file():
        items = [Item(entry.name, entry.path) for entry in read_manifest(input_path)]
    else:
        raise InputError(f"{input_path} is neither a folder of audio files nor a JSONL manifest")
    if not items:
        raise InputError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in {input_path}")
    seen: set[str] = set()
    for item in items:
        if item.path in seen:
            raise InputError(f"{input_path} lists {item.path} twice; remove the duplicate")
        seen.add(item.path)
    return items


def plan_batches(lengths: list[float], budget: float) -> list[list[int]]:
    """Groups items of similar length: indices, longest first, with ``len(batch) * longest <= budget``.

    A batch always holds at least one item, however long.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= budget:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def pad_stack(tensors: list[Tensor]) -> Tensor:
    """Stacks ``[C, T_i]`` tensors into ``[B, C, max T_i]``, zero-padded on the right."""
    longest = max(t.shape[-1] for t in tensors)
    return torch.stack([nn.functional.pad(t, (0, longest - t.shape[-1])) for t in tensors])


@dataclass(frozen=True)
class Processes:
    """This process's place among the processes of a run.

    Attributes:
        index: This process, ``0..count - 1``.
        count: Processes of the run.
        device: Where this process runs the model.
    """

    index: int
    count: int
    device: torch.device


def current_processes() -> Processes:
    """The processes started by ``accelerate launch``, or this one alone without it."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState  # only needed (and only initialised) under a launcher

        state = PartialState(cpu=not torch.cuda.is_available())  # on CPUs: one gloo process group
        return Processes(state.process_index, state.num_processes, state.device)
    return Processes(0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu"))


class _BatchLoader(Dataset):
    """Loads planned batches: item ``b`` is ``(loaded, failures)`` for batch ``b``.

    ``loaded`` pairs each readable :class:`Item` with its audio ``[C, T]`` at
    the model rate; ``failures`` holds ``{"path", "error"}`` for the others.
    """

    def __init__(self, batches: list[list[Item]], sample_rate: int, channels: int) -> None:
        self.batches, self.sample_rate, self.channels = batches, sample_rate, channels

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> tuple[list[tuple[Item, Tensor]], list[dict[str, str]]]:
        loaded, failures = [], []
        for item in self.batches[index]:
            try:
                loaded.append((item, self._load(item.source)))
            except InputError as e:
                failures.append({"path": item.path, "error": str(e)})
        return loaded, failures

    def _load(self, source: Path) -> Tensor:
        wav, _ = audio.load(source, target_rate=self.sample_rate, mono=self.channels == 1)  # [C, T]
        if wav.shape[0] != self.channels:
            raise InputError(f"{source} has {wav.shape[0]} channels; the model takes {self.channels}")
        if not torch.isfinite(wav).all():
            raise InputError(f"{source} contains NaN or Inf samples")
        return wav


def encode_batch(model: Codec, wavs: list[Tensor], bandwidth_kbps: float | None) -> list[Tensor]:
    """Encodes audio ``[C, T_i]`` items as one padded batch; returns each item's codes ``[n_q, F_i]`` on the CPU."""
    device = next(model.parameters()).device
    lengths = torch.tensor([w.shape[-1] for w in wavs])
    encoded = model.encode(pad_stack(wavs).to(device), bandwidth_kbps=bandwidth_kbps, lengths=lengths.to(device))
    return [encoded.codes[i, :, : int(f)].cpu() for i, f in enumerate(encoded.frame_lengths)]


@dataclass
class _PendingShard:
    """Items encoded, and files failed, since the last commit."""

    codes: list[Tensor] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, item: Item, seconds: float, wav: Tensor, codes: Tensor) -> None:
        """Adds a file's codes ``[n_q, F]`` and its manifest line (shard and offset come at commit)."""
        self.codes.append(codes)
        self.records.append(
            {"path": item.path, "duration_s": round(seconds, 6), "samples": wav.shape[-1], "frames": codes.shape[-1]}
        )
        self.seconds += seconds

    def take(self) -> dict[str, list[Any]]:
        """Empties the pending shard; returns its contents as :func:`commit_shard` arguments."""
        taken = {"codes": self.codes, "records": self.records, "failures": self.failures}
        self.codes, self.records, self.failures, self.seconds = [], [], [], 0.0
        return taken


@dataclass
class TokenizeSummary:
    """What a token directory holds.

    Attributes:
        items: Files tokenized.
        seconds: Their total duration.
        frames: Their total code frames.
        n_q: Codebooks per frame.
        shards: Shard files.
        failures: Reason of each file that could not be tokenized, by path.
    """

    items: int
    seconds: float
    frames: int
    n_q: int
    shards: int
    failures: dict[str, str]

    @property
    def hours(self) -> float:
        """Total duration in hours."""
        return self.seconds / 3600

    @property
    def tokens(self) -> int:
        """Codes stored: ``frames * n_q``."""
        return self.frames * self.n_q

    def format(self) -> str:
        """A few lines for people."""
        lines = [
            (
                f"tokenized {self.items} files ({self.hours:.3f} h) into {self.shards} shards: "
                f"{self.frames:,} frames x {self.n_q} codebooks = {self.tokens:,} tokens"
            ),
            f"{len(self.failures)} failures" + (":" if self.failures else ""),
        ]
        lines += [f"  {path}: {reason}" for path, reason in sorted(self.failures.items())]
        return "\n".join(lines)


def model_info(model: Codec, model_ref: str, n_q: int) -> dict[str, Any]:
    """The ``tokens.json`` of codes made by ``model`` with ``n_q`` codebooks."""
    config = model.config
    return {
        "format": 1,
        "model": model_ref,
        "model_id": model.model_id,
        "model_name": config.name,
        "sample_rate": config.sample_rate,
        "channels": config.channels,
        "hop_length": config.hop_length,
        "frame_rate_hz": config.frame_rate_hz,
        "n_q": n_q,
        "codebook_size": config.codebook_size,
        "bandwidth_kbps": model.bandwidths_kbps[n_q - 1],
    }


def _prepare_out_dir(out_dir: Path, info: dict[str, Any]) -> None:
    """Writes ``tokens.json``, or checks that an existing one describes the same model and codebooks."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / INFO_FILE).is_file():
        old = read_info(out_dir)
        if (old.get("model_id"), old.get("n_q")) != (info["model_id"], info["n_q"]):
            raise InputError(
                f"{out_dir} already holds tokens of model {old.get('model_id')} with {old.get('n_q')} codebooks, "
                f"not {info['model_id']} with {info['n_q']}; resume with the same --model and --kbps or choose "
                "another output folder"
            )
        return
    write_info(out_dir, info)


def tokenize(
    input_path: str | Path,
    out_dir: str | Path,
    model: Codec,
    model_ref: str,
    bandwidth_kbps: float | None = None,
    batch_seconds: float = 60.0,
    shard_minutes: float = 60.0,
    workers: int = 0,
    progress: bool = True,
) -> TokenizeSummary | None:
    """Tokenizes this process's part of the input files into ``out_dir`` (see the module docstring).

    Args:
        input_path: A folder of audio files or a JSONL manifest.
        out_dir: The token directory, created or resumed.
        model: The codec, in eval mode.
        model_ref: How the model was named (directory or bundled name), recorded in ``tokens.json``.
        bandwidth_kbps: Bitrate, choosing the codebooks kept (default: all).
        batch_seconds: Padded audio per batch (batch size times its longest file).
        shard_minutes: Audio per shard.
        workers: DataLoader processes reading and resampling files (0: this one).
        progress: Show a progress bar (on process 0).

    Returns:
        The summary of the whole directory if this process wrote the final
        manifest (it is the last to finish), else ``None``.

    Raises:
        InputError: Bad input list, or ``out_dir`` holds tokens of another model or ``n_q``.
        BandwidthError: Unsupported ``bandwidth_kbps``.
    """
    out_dir = Path(out_dir)
    procs = current_processes()
    model = model.to(procs.device).eval()
    n_q = model.n_q_for_bandwidth(bandwidth_kbps)
    if model.config.codebook_size > 2**15:
        raise InputError(f"codes are stored as int16; codebook size {model.config.codebook_size} is too large")
    items = list_inputs(input_path)
    _prepare_out_dir(out_dir, model_info(model, model_ref, n_q))
    remove_orphans(out_dir, procs.index, procs.count)
    done = {line["path"] for line in committed_lines(out_dir) if "frames" in line}
    todo = [item for item in items[procs.index :: procs.count] if item.path not in done]
    durations, failures = _durations(todo)
    pending = _PendingShard(failures=failures)
    readable = list(durations)
    batches = [[readable[i] for i in b] for b in plan_batches(list(durations.values()), batch_seconds)]
    loader = DataLoader(
        _BatchLoader(batches, model.sample_rate, model.config.channels), batch_size=None, num_workers=workers
    )
    sequence = next_sequence(out_dir, procs.index)
    show = progress and procs.index == 0
    with tqdm(total=len(todo), unit="file", desc="tokenize", disable=not show) as bar:
        bar.update(len(pending.failures))
        for loaded, failed in loader:
            pending.failures += failed
            if loaded:
                codes = encode_batch(model, [wav for _, wav in loaded], bandwidth_kbps)
                for (item, wav), item_codes in zip(loaded, codes, strict=True):
                    pending.add(item, durations[item], wav, item_codes)
            if pending.seconds >= shard_minutes * 60:
                commit_shard(out_dir, shard_name(procs.index, sequence), **pending.take())
                sequence += 1
            bar.update(len(loaded) + len(failed))
    if pending.codes or pending.failures:
        commit_shard(out_dir, shard_name(procs.index, sequence), **pending.take())
    return finish(out_dir, items, n_q)


def _durations(items: list[Item]) -> tuple[dict[Item, float], list[dict[str, str]]]:
    """Seconds of each readable file (from its header), and the failures of the others."""
    durations, failures = {}, []
    for item in items:
        try:
            durations[item] = audio.read_info(item.source).duration
        except InputError as e:
            failures.append({"path": item.path, "error": str(e)})
    return durations, failures


def finish(out_dir: Path, items: list[Item], n_q: int) -> TokenizeSummary | None:
    """Writes ``manifest.jsonl`` and ``failures.jsonl`` once every input file is in a committed part.

    Returns:
        The summary, or ``None`` while other processes still have files to do.
    """
    tokenized: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    for line in committed_lines(out_dir):
        if "frames" in line:
            tokenized.setdefault(line["path"], line)
        else:
            failed[line["path"]] = line["error"]
    if any(item.path not in tokenized and item.path not in failed for item in items):
        return None
    manifest = [tokenized[item.path] for item in items if item.path in tokenized]
    failures = {item.path: failed[item.path] for item in items if item.path not in tokenized}
    write_jsonl(out_dir / MANIFEST_FILE, manifest)
    write_jsonl(out_dir / FAILURES_FILE, [{"path": p, "error": e} for p, e in failures.items()])
    return TokenizeSummary(
        items=len(manifest),
        seconds=sum(line["duration_s"] for line in manifest),
        frames=sum(line["frames"] for line in manifest),
        n_q=n_q,
        shards=len({line["shard"] for line in manifest}),
        failures=failures,
    )


def output_names(paths: list[str]) -> list[Path]:
    """Relative ``.wav`` names for manifest paths, keeping their folders.

    Absolute paths lose their common folder, ``..`` parts are dropped, and a
    name that two paths would share (``a.flac`` and ``a.ogg``) keeps the
    original suffix (``a.flac.wav``). A path with no name left (``/``,
    ``..``) becomes ``item-N.wav`` after its line number ``N`` (from 1).
    """
    absolute = [p for p in paths if PurePath(p).is_absolute()]
    root = os.path.commonpath([str(PurePath(p).parent) for p in absolute]) if absolute else ""
    names = []
    for number, p in enumerate(paths, start=1):
        rel = PurePath(os.path.relpath(p, root)) if PurePath(p).is_absolute() else PurePath(p)
        parts = [part for part in rel.parts if part not in ("..", ".")]
        names.append(Path(*parts) if parts else Path(f"item-{number}"))
    stems = [n.with_suffix("") for n in names]
    shared = {s for s in stems if stems.count(s) > 1}
    return [Path(f"{n}.wav") if n.with_suffix("") in shared else n.with_suffix(".wav") for n in names]


def detokenize(tokens_dir: str | Path, audio_dir: str | Path, model: Codec, batch_seconds: float = 60.0) -> int:
    """Decodes every item of a token directory to a WAV file at the model rate.

    Args:
        tokens_dir: A finished token directory.
        audio_dir: Where to write; names follow the manifest paths (:func:`output_names`).
        model: The model that made the tokens.
        batch_seconds: Padded audio per decoding batch.

    Returns:
        Files written.

    Raises:
        ModelMismatchError: If ``model`` is not the one that made the tokens.
    """
    dataset = TokenDataset(tokens_dir)
    if dataset.info["model_id"] != model.model_id:
        raise ModelMismatchError(
            f"{tokens_dir} was made by model {dataset.info['model_id']} ({dataset.info['model']}), "
            f"not by {model.model_id}; pass that model with --model"
        )
    device = next(model.parameters()).device
    audio_dir = Path(audio_dir)
    names = output_names([item["path"] for item in dataset.items])
    seconds = [item["frames"] / model.frame_rate_hz for item in dataset.items]
    for batch in tqdm(plan_batches(seconds, batch_seconds), unit="batch", desc="detokenize"):
        wav = model.decode(pad_stack([dataset[i] for i in batch]).to(device)).cpu()  # [B, C, F * hop]
        for row, i in enumerate(batch):
            path = audio_dir / names[i]
            path.parent.mkdir(parents=True, exist_ok=True)
            audio.save(path, wav[row, :, : dataset.items[i]["samples"]], model.sample_rate)
    return len(dataset)
