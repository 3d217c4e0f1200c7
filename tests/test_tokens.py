"""Tokenizing a folder of real speech: shards, manifest, resuming, TokenDataset, patterns, detokenize."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch

from codec import audio
from codec.cli import main
from codec.errors import InputError, ModelMismatchError
from codec.export import count_real_differences
from codec.network.model import Codec
from codec.tokens import patterns
from codec.tokens import tokenize as tokens
from codec.tokens.store import FAILURES_FILE, MANIFEST_FILE, SHARD_DIR, TokenDataset

DATA_DIR = Path(__file__).parent / "data"
BAD_FILE = "broken.wav"


@pytest.fixture
def speech_dir(tmp_path: Path) -> Path:
    """The WAVs of tests/data (one in a sub-folder) and a file that is not audio."""
    wavs = sorted(DATA_DIR.glob("*.wav"))
    if len(wavs) < 3:
        pytest.fail(f"the tests need the clips of {DATA_DIR}/README.md")
    folder = tmp_path / "speech"
    (folder / "sub").mkdir(parents=True)
    for i, wav in enumerate(wavs):
        shutil.copy(wav, folder / ("sub" if i == 1 else "") / wav.name)
    (folder / BAD_FILE).write_bytes(b"RIFF but not really a wave file")
    return folder


@pytest.fixture
def model_dir(tmp_path: Path, fitted_codec: Codec) -> Path:
    """A saved tiny model whose codebooks fit speech (so codes vary)."""
    fitted_codec.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def run(folder: Path, out: Path, model_dir: Path, **kwargs: float) -> tokens.TokenizeSummary | None:
    """Tokenizes ``folder`` into ``out`` with the saved model, without a progress bar."""
    model = Codec.from_pretrained(model_dir)
    return tokens.tokenize(folder, out, model, str(model_dir), progress=False, **kwargs)


def test_batched_tokens_equal_single_file_encoding(speech_dir: Path, model_dir: Path, tmp_path: Path) -> None:
    model = Codec.from_pretrained(model_dir)
    kbps = model.bandwidths_kbps[2]
    summary = run(speech_dir, tmp_path / "tok", model_dir, bandwidth_kbps=kbps, batch_seconds=1e6)
    assert summary is not None
    good = sorted(p for p in speech_dir.rglob("*.wav") if p.name != BAD_FILE)
    assert summary.items == len(good) and summary.n_q == 3
    assert list(summary.failures) == [BAD_FILE] and "cannot read" in summary.failures[BAD_FILE]
    assert summary.seconds == pytest.approx(sum(sf.info(str(p)).duration for p in good), abs=1e-3)

    dataset = TokenDataset(tmp_path / "tok")
    assert [item["path"] for item in dataset.items] == [p.relative_to(speech_dir).as_posix() for p in good]
    assert summary.frames == sum(item["frames"] for item in dataset.items)
    equal = total = batched_with_others = 0
    for i, item in enumerate(dataset.items):
        wav, _ = audio.load(speech_dir / item["path"], target_rate=model.sample_rate, mono=True)
        alone = model.encode(wav[None], bandwidth_kbps=kbps).codes  # [1, n_q, F]
        batched = dataset[i][None]
        assert batched.dtype == torch.long and batched.shape == alone.shape
        # Equal but for near ties that batch-size-dependent float rounding flips (see codec.tokens.tokenize).
        assert count_real_differences(model, wav[None], alone, batched) == 0, item["path"]
        equal += int((batched == alone).sum())
        total += alone.numel()
        batched_with_others += item["offset"] > 0
    assert batched_with_others >= 2  # one shard, several items: they were encoded as one padded batch
    assert equal / total > 0.99
    failures = [json.loads(line) for line in (tmp_path / "tok" / FAILURES_FILE).read_text().splitlines()]
    assert [f["path"] for f in failures] == [BAD_FILE]


def test_token_dataset_crops_and_drops_codebooks(speech_dir: Path, model_dir: Path, tmp_path: Path) -> None:
    run(speech_dir, tmp_path / "tok", model_dir)
    full = TokenDataset(tmp_path / "tok")
    cropped = TokenDataset(tmp_path / "tok", max_frames=7, n_q=2)
    assert cropped.vocabulary == patterns.Vocabulary(n_q=2, codebook_size=full.vocabulary.codebook_size)
    for i in range(len(full)):
        codes = cropped[i]
        assert codes.shape == (2, 7)
        windows = full[i][:2].unfold(-1, 7, 1)  # [2, F - 6, 7]: every 7-frame window of the item
        assert any(torch.equal(codes, windows[:, s]) for s in range(windows.shape[1]))
    start = TokenDataset(tmp_path / "tok", max_frames=5, random_crop=False)
    assert torch.equal(start[0], full[0][:, :5])
    with pytest.raises(InputError, match="n_q"):
        TokenDataset(tmp_path / "tok", n_q=9)


def test_every_pattern_round_trips_real_tokens(speech_dir: Path, model_dir: Path, tmp_path: Path) -> None:
    run(speech_dir, tmp_path / "tok", model_dir)
    dataset = TokenDataset(tmp_path / "tok")
    vocab = dataset.vocabulary
    for i in range(len(dataset)):
        codes = dataset[i]
        assert torch.equal(patterns.unparallel(patterns.parallel(codes, vocab), vocab), codes)
        assert torch.equal(patterns.unflatten(patterns.flatten(codes, vocab), vocab, vocab.n_q), codes)
        assert torch.equal(patterns.undelay(patterns.delay(codes, vocab), vocab), codes)
        assert torch.equal(patterns.join_coarse_fine(*patterns.split_coarse_fine(codes, vocab), vocab), codes)


class Interrupt(Exception):
    """Raised on purpose to stop a run after its first shard."""


def test_interrupted_run_resumes_without_duplicates(
    speech_dir: Path, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = {"batch_seconds": 1e-3, "shard_minutes": 1e-4}  # one file per batch, one batch per shard
    reference = run(speech_dir, tmp_path / "reference", model_dir, **settings)

    commit = tokens.commit_shard

    def commit_then_stop(*args: object, **kwargs: object) -> None:
        commit(*args, **kwargs)
        raise Interrupt

    monkeypatch.setattr(tokens, "commit_shard", commit_then_stop)
    with pytest.raises(Interrupt):
        run(speech_dir, tmp_path / "tok", model_dir, **settings)
    shards = tmp_path / "tok" / SHARD_DIR
    assert len(list(shards.glob("*.jsonl"))) == 1 and not (tmp_path / "tok" / MANIFEST_FILE).exists()
    (shards / "p00-00099.safetensors").write_bytes(b"orphan of a killed run")
    (shards / ".p00-00098.safetensors.x1y2.tmp").write_bytes(b"temporary file of a killed write")
    monkeypatch.setattr(tokens, "commit_shard", commit)

    resumed = run(speech_dir, tmp_path / "tok", model_dir, **settings)
    assert resumed == reference
    assert not (shards / "p00-00099.safetensors").exists()
    assert not (shards / ".p00-00098.safetensors.x1y2.tmp").exists()
    paths = [item["path"] for item in TokenDataset(tmp_path / "tok").items]
    assert len(paths) == len(set(paths)) == reference.items
    first, again = TokenDataset(tmp_path / "reference"), TokenDataset(tmp_path / "tok")
    for i in range(len(first)):
        assert first.items[i]["path"] == again.items[i]["path"]
        assert torch.equal(first[i], again[i])


def test_processes_share_the_files(
    speech_dir: Path, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = run(speech_dir, tmp_path / "reference", model_dir)
    results = []
    for index in (1, 0):  # as if `accelerate launch` had started two processes; process 1 finishes first
        monkeypatch.setattr(tokens, "current_processes", lambda i=index: tokens.Processes(i, 2, torch.device("cpu")))
        results.append(run(speech_dir, tmp_path / "tok", model_dir))
    assert results[0] is None and results[1] is not None
    assert (results[1].items, results[1].frames, results[1].failures) == (
        reference.items,
        reference.frames,
        reference.failures,
    )
    shards = {item["shard"].split("/")[-1][:3] for item in TokenDataset(tmp_path / "tok").items}
    assert shards == {"p00", "p01"}


@pytest.mark.slow
def test_accelerate_launch_two_processes(speech_dir: Path, model_dir: Path, tmp_path: Path) -> None:
    launch = [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    command = [
        *launch,
        "-m",
        "codec.cli",
        "tokenize",
        str(speech_dir),
        str(tmp_path / "tok"),
        "--model",
        str(model_dir),
    ]
    subprocess.run(command, check=True, timeout=600)
    items = TokenDataset(tmp_path / "tok").items
    assert len(items) == len([p for p in speech_dir.rglob("*.wav") if p.name != BAD_FILE])
    assert {item["shard"].split("/")[-1][:3] for item in items} == {"p00", "p01"}


def test_resuming_with_another_bitrate_is_refused(speech_dir: Path, model_dir: Path, tmp_path: Path) -> None:
    model = Codec.from_pretrained(model_dir)
    run(speech_dir, tmp_path / "tok", model_dir, bandwidth_kbps=model.bandwidths_kbps[0])
    with pytest.raises(InputError, match="same --model and --kbps"):
        run(speech_dir, tmp_path / "tok", model_dir)


def test_manifest_input(speech_dir: Path, model_dir: Path, tmp_path: Path) -> None:
    wavs = sorted(speech_dir.glob("*.wav"))[:2]
    listing = tmp_path / "list.jsonl"
    listing.write_text("".join(json.dumps({"path": str(p), "speaker": "x"}) + "\n" for p in wavs))
    summary = run(listing, tmp_path / "tok", model_dir)
    assert summary is not None and summary.items + len(summary.failures) == 2
    assert [item["path"] for item in TokenDataset(tmp_path / "tok").items] == [
        str(p) for p in wavs if p.name != BAD_FILE
    ]


def test_detokenize_writes_audio_of_the_right_length(speech_dir: Path, model_dir: Path, tmp_path: Path) -> None:
    run(speech_dir, tmp_path / "tok", model_dir)
    assert main(["detokenize", str(tmp_path / "tok"), str(tmp_path / "audio")]) == 0
    model = Codec.from_pretrained(model_dir)
    dataset = TokenDataset(tmp_path / "tok")
    for i, item in enumerate(dataset.items):
        out = tmp_path / "audio" / Path(item["path"]).with_suffix(".wav")
        wav, rate = audio.load(out)
        assert rate == model.sample_rate and wav.shape == (1, item["samples"])
        source, _ = audio.load(speech_dir / item["path"], target_rate=model.sample_rate)
        assert wav.shape[-1] == source.shape[-1]
        expected = model.decode(dataset[i][None])[0, :, : item["samples"]].clamp(-1, 1)
        assert (wav - expected).abs().max() <= 2.0 / 2**15  # 16-bit PCM rounding and scaling


def test_detokenize_refuses_another_model(speech_dir: Path, model_dir: Path, tmp_path: Path) -> None:
    run(speech_dir, tmp_path / "tok", model_dir)
    other = Codec(Codec.from_pretrained(model_dir).config)
    with pytest.raises(ModelMismatchError, match="--model"):
        tokens.detokenize(tmp_path / "tok", tmp_path / "audio", other)


def test_cli_tokenize_and_missing_model(
    speech_dir: Path, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tokenize", str(speech_dir), str(tmp_path / "tok"), "--model", str(model_dir)]) == 0
    out = capsys.readouterr().out
    assert "tokens" in out and "1 failures" in out and BAD_FILE in out
    assert main(["tokenize", str(speech_dir), str(tmp_path / "other"), "--model", "no-such-model"]) == 2
    assert "no-such-model" in capsys.readouterr().err


def test_output_names_keep_folders_and_avoid_clashes() -> None:
    names = tokens.output_names(["/data/a/x.flac", "/data/b/x.flac", "/data/b/x.ogg", "../c.mp3"])
    assert names == [Path("a/x.wav"), Path("b/x.flac.wav"), Path("b/x.ogg.wav"), Path("c.wav")]


def test_manifest_paths_without_a_name_detokenize_to_numbered_files(
    speech_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    run(speech_dir, tmp_path / "tok", model_dir)
    manifest = tmp_path / "tok" / "manifest.jsonl"
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    lines[0]["path"], lines[1]["path"] = "/", ".."  # a hand-edited or hostile manifest
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert main(["detokenize", str(tmp_path / "tok"), str(tmp_path / "audio")]) == 0
    assert (tmp_path / "audio" / "item-1.wav").is_file() and (tmp_path / "audio" / "item-2.wav").is_file()
    assert tokens.output_names(["/", "/a/x.flac"]) == [Path("item-1.wav"), Path("a/x.wav")]
