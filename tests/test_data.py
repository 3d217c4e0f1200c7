"""The training data pipeline: sources, crops, order, skipping bad files, shards."""

from __future__ import annotations

import io
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from codec.errors import InputError
from train.config import DataConfig
from train.data import CropDataset, ShardDataset, StepSampler, is_held_out, list_audio, probe, split_entries

DATA = Path(__file__).resolve().parent / "data"


def test_manifests_and_folders_list_the_same_files(tmp_path: Path) -> None:
    files = list_audio(str(DATA))
    assert files and all(Path(f).is_file() for f in files)
    (tmp_path / "list.txt").write_text("\n".join(files) + "\n")
    (tmp_path / "list.jsonl").write_text("".join(f'{{"path": "{f}", "duration_s": 1.0}}\n' for f in files))
    assert list_audio(str(tmp_path / "list.txt")) == files
    assert list_audio(str(tmp_path / "list.jsonl")) == files


def test_bad_sources_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="neither a folder nor a manifest"):
        list_audio(str(tmp_path / "missing"))
    (tmp_path / "bad.jsonl").write_text('{"file": "x.wav"}\n')
    with pytest.raises(InputError, match="bad.jsonl:1"):
        list_audio(str(tmp_path / "bad.jsonl"))


def test_corrupt_and_short_files_are_skipped_with_one_warning(tmp_path: Path) -> None:
    good = list_audio(str(DATA))
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF not really a wave file")
    sf.write(tmp_path / "short.wav", np.zeros(100, dtype="float32"), 16000)
    with pytest.warns(UserWarning, match="skipped 1 unreadable and 1 too short"):
        entries = probe([*good, str(tmp_path / "corrupt.wav"), str(tmp_path / "short.wav")], 0.3)
    assert [e.path for e in entries] == good


def test_crops_are_deterministic_mono_and_resampled() -> None:
    entries = probe(list_audio(str(DATA)), 0.3)
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
        for i, path in enumerate(list_audio(str(DATA))):
            buf = io.BytesIO()
            data, rate = sf.read(path, dtype="float32")
            sf.write(buf, data, rate, format="FLAC")
            sink.write({"__key__": f"item{i}", "flac": buf.getvalue()})
    dataset = ShardDataset([str(tmp_path / "shard-000.tar")], 16000, DataConfig(segment_s=0.25), seed=0)
    crops = [x for _, x in zip(range(6), dataset)]
    assert len(crops) == 6 and all(c.shape == (1, 4000) for c in crops)
