"""The training data pipeline: sources, crops, order, skipping bad files, shards."""

from __future__ import annotations

import io
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from codec.sources import list_audio
from train.config import DataConfig
from train.data import CropDataset, ShardDataset, StepSampler, is_held_out, probe, split_entries

DATA = Path(__file__).resolve().parent / "data"


def test_corrupt_and_short_files_are_skipped_with_one_warning(tmp_path: Path) -> None:
    good = [str(p) for p in list_audio(DATA)]
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF not really a wave file")
    sf.write(tmp_path / "short.wav", np.zeros(100, dtype="float32"), 16000)
    with pytest.warns(UserWarning, match="skipped 1 unreadable and 1 too short"):
        entries = probe([*good, str(tmp_path / "corrupt.wav"), str(tmp_path / "short.wav")], 0.3)
    assert [e.path for e in entries] == good


def test_crops_are_deterministic_mono_and_resampled() -> None:
    entries = probe([str(p) for p in list_audio(DATA)], 0.3)
    dataset = CropDataset(entries, 16000, DataConfig(segment_s=0.5, gain_db=6.0))
    stereo = next(i for i, e in enumerate(entries) if e.channels == 2)
    a, b, c = dataset[(stereo, 7)], dataset[(stereo, 7)], dataset[(stereo, 8)]
    assert a.shape == (1, 8000)
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)
    assert float(a.abs().max()) <= 0.99 + 1e-6


def test_sampler_resumes_at_any_position_and_splits_processes() -> None:
    full = StepSampler(10, seed=3)
    items = [x for _, x in zip(range(40), full)]
    resumed = StepSampler(10, seed=3, start=17)
    assert [x for _, x in zip(range(23), resumed)] == items[17:]
    rank0, rank1 = StepSampler(10, 3, rank=0, world=2), StepSampler(10, 3, rank=1, world=2)
    interleaved = [x for pair in islice(zip(rank0, rank1), 20) for x in pair]
    assert interleaved == items
    first_epoch = sorted(i for i, _ in items[:10])
    assert first_epoch == list(range(10))


def test_validation_split_is_deterministic() -> None:
    paths = [f"/data/file{i}.wav" for i in range(1000)]
    held = [p for p in paths if is_held_out(p, 0.1)]
    assert 50 < len(held) < 150 and held == [p for p in paths if is_held_out(p, 0.1)]
    train, valid = split_entries(DataConfig(train=(str(DATA),), valid_fraction=0.0))
    assert train and not valid


def test_webdataset_shards_give_crops(tmp_path: Path) -> None:
    import webdataset as wds

    with wds.TarWriter(str(tmp_path / "shard-000.tar")) as sink:
        for i, path in enumerate(list_audio(DATA)):
            buf = io.BytesIO()
            data, rate = sf.read(path, dtype="float32")
            sf.write(buf, data, rate, format="FLAC")
            sink.write({"__key__": f"item{i}", "flac": buf.getvalue()})
    dataset = ShardDataset([str(tmp_path / "shard-000.tar")], 16000, DataConfig(segment_s=0.25), seed=0)
    crops = [x for _, x in zip(range(6), dataset)]
    assert len(crops) == 6 and all(c.shape == (1, 4000) for c in crops)
