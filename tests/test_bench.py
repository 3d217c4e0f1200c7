"""The pieces of ``python -m eval.bench`` on real speech with the tiny model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import soundfile as sf
import torch
from conftest import DATA_DIR, seeded_tiny

from codec.fileformat.onnx_decode import CACHE_ENV
from eval import bench
from eval.baselines import parse_baselines

RATE = 16000


@pytest.fixture(scope="module")
def clips() -> list[torch.Tensor]:
    return bench.speech_clips(DATA_DIR, RATE)


def test_speech_chunks_cycle_through_the_clips(clips: list[torch.Tensor]) -> None:
    total = sum(c.numel() for c in clips)
    seconds = 1.5 * total / RATE  # longer than all clips: they repeat
    chunks = list(bench.speech_chunks(clips, seconds, RATE, chunk=1000))
    assert all(c.numel() == 1000 for c in chunks[:-1]) and 0 < chunks[-1].numel() <= 1000
    joined = torch.cat(chunks)
    assert joined.numel() == int(seconds * RATE)
    assert torch.equal(joined[:total], torch.cat(clips))
    assert torch.equal(joined[total:], torch.cat(clips)[: joined.numel() - total])


def test_codec_speed_and_streaming_latency(clips: list[torch.Tensor]) -> None:
    model = seeded_tiny()
    wav = bench.speech(clips, 2.0, RATE)  # [T]
    speed = bench.time_codec(model, wav, threads=1, segment_s=0.5)
    assert speed.encode_x > 0 and speed.decode_x > 0
    stream = bench.streaming_latency(model, wav[:800])
    assert stream["latency_ms"] == 1000 * model.hop_length / RATE
    assert stream["chunks"] == 800 // model.hop_length
    assert 0 < stream["p50_ms"] <= stream["p95_ms"]
    assert 0 < stream["cpu_p50_ms"] <= stream["cpu_p95_ms"]


def test_exported_step_latency(clips: list[torch.Tensor], tmp_path: Path) -> None:
    model = seeded_tiny()
    step = bench.step_latency(model, bench.speech(clips, 0.5, RATE)[:800], tmp_path)
    assert step["latency_ms"] == 1000 * model.hop_length / RATE and step["chunks"] == 800 // model.hop_length
    assert 0 < step["p50_ms"] <= step["p95_ms"] and 0 < step["cpu_p50_ms"] <= step["cpu_p95_ms"]


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_opus_speed(clips: list[torch.Tensor]) -> None:
    speed = bench.time_opus(bench.speech(clips, 2.0, RATE), RATE, parse_baselines(bench.OPUS)[0], threads=1, runs=1)
    assert speed.encode_x > 1 and speed.decode_x > speed.encode_x  # Opus decodes far faster than it encodes


def test_memory_is_measured_in_a_fresh_process(clips: list[torch.Tensor], tmp_path: Path) -> None:
    model_arg = bench.cli_model_arg("preset:tiny", seeded_tiny(), tmp_path)
    wav = bench.write_speech(tmp_path / "in.wav", clips, 0.3, RATE)
    assert sf.info(str(wav)).frames == int(0.3 * RATE)
    result = bench.measure_memory(model_arg, wav, tmp_path)
    assert 0 < result["import_mb"] <= result["loaded_mb"] <= result["compress_peak_mb"] <= result["decompress_peak_mb"]
    assert result["compress_s"] > 0 and (tmp_path / "memory.wav").is_file()


def test_command_line_and_start_up_are_timed_in_fresh_processes(clips: list[torch.Tensor], tmp_path: Path) -> None:
    model_arg = bench.cli_model_arg("preset:tiny", seeded_tiny(), tmp_path)
    wav = bench.write_speech(tmp_path / "in.wav", clips, 0.5, RATE)
    compress_run, decompress_run = bench.time_cli(model_arg, wav, tmp_path)
    assert compress_run.wall_s > 0 and decompress_run.peak_mb > 0
    assert sf.info(str(tmp_path / "cli.wav")).frames == int(0.5 * RATE)
    info = bench.run_codec("info", tmp_path / "cli.rvq")
    torch_run = bench.run_python("import torch")
    assert "codebooks:" in info.stdout
    assert 0 < info.peak_mb < torch_run.peak_mb  # info imports no torch


def test_a_bundled_models_file_is_decompressed_on_the_cached_decoder(
    clips: list[torch.Tensor], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    wav = bench.write_speech(tmp_path / "in.wav", clips, 1.0, RATE)
    bench.time_cli("speech-16khz", wav, tmp_path)  # the file names its model: no --model, and the cache is written
    assert any((tmp_path / "cache").iterdir())
    cached = bench._decompress_cached(tmp_path / "cli.rvq", tmp_path)
    assert sf.info(str(tmp_path / "startup.wav")).frames == int(1.0 * RATE)
    assert 0 < cached.peak_mb < bench.run_python("import torch").peak_mb / 2  # no torch in the process


def test_speed_table_ratios() -> None:
    speeds = {("m", 1): bench.Speed(10.0, 20.0), (bench.REFERENCE_SPEC, 1): bench.Speed(5.0, 5.0),
              ("libopus", 1): bench.Speed(50.0, 400.0)}
    table = bench.speed_table(speeds, bench.REFERENCE_SPEC)
    assert "| m | 1 | 10.0 | 20.0 | 0.200 | 0.050 | 2.00 | 4.00 |" in table


def test_critic_costs_time_every_critic_and_generator() -> None:
    from train.bench import critic_costs

    rows = critic_costs(batch_size=1, segment_s=0.2, repeats=1)
    names = [name for name, _, _ in rows]
    assert [n.split()[1] for n in names] == ["msd", "mpd", "msstft", "mrd", "mrd", "seanet", "istft"]
    assert all(params > 0 and seconds > 0 for _, params, seconds in rows)
    mrd_16, mrd_32 = rows[3][1], rows[4][1]
    assert mrd_32 > 3 * mrd_16  # the middle convolutions grow with the square of the channels


def test_command_line_section_alternates_offline_and_command_line_rounds(
    clips: list[torch.Tensor], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench, "CLI_ROUNDS", 2)
    monkeypatch.setattr(bench, "REFERENCE_SPEC", "reference")
    model = seeded_tiny()
    models = {"tiny": model, "reference": model}
    args = {name: bench.cli_model_arg("preset:tiny", model, tmp_path / name) for name in models}
    bench._cli_section(models, args, clips, bench.SEGMENT_S, tmp_path)
    rows = {line.split(" | ")[0].strip("| "): line for line in capsys.readouterr().out.splitlines() if "|" in line}
    ratios = rows["tiny"].split(" | ")[4]  # "median (round 1, round 2)"
    median, every = ratios.split(" (")
    assert len(every.rstrip(")").split(", ")) == 2 and float(median) > 0
    assert len(rows["reference"].split(" | ")[4].split(", ")) == 1 and "libopus (ffmpeg)" in rows
    assert sf.info(str(tmp_path / "cli.wav")).frames == int(bench.SEGMENT_S * RATE)


def test_istft_variant_keeps_the_codes_and_streams(clips: list[torch.Tensor], tmp_path: Path) -> None:
    """The bench's iSTFT-decoder variant encodes as the model does, streams per frame and runs through the CLI."""
    model = seeded_tiny()
    built = bench.with_istft_decoder(model, {"decoder": "istft", "decoder_dim": 16, "decoder_layers": 2,
                                             "n_fft": 2 * model.hop_length})
    assert built.config.decoder == "istft" and model.config.decoder == "seanet"
    wav = bench.speech(clips, 0.5, RATE)[None, None]  # [1, 1, T]
    assert torch.equal(built.encode(wav).codes, model.encode(wav).codes)
    stream = bench.streaming_latency(built, wav[0, 0, :800])
    assert stream["chunks"] == 800 // model.hop_length and 0 < stream["p50_ms"] <= stream["p95_ms"]
    spec = "preset:tiny" + bench.ISTFT_SUFFIX
    model_arg = bench.cli_model_arg(spec, built, tmp_path)
    assert Path(model_arg).is_dir()
    bench.time_cli(model_arg, bench.write_speech(tmp_path / "in.wav", clips, 0.5, RATE), tmp_path)
    assert sf.info(str(tmp_path / "cli.wav")).frames == int(0.5 * RATE)


def test_istft_variant_takes_the_speech_recipes_decoder() -> None:
    """Without settings, the variant's decoder is the one configs/speech16k.yaml trains, so the two stay in step."""
    import yaml

    recipe = yaml.safe_load(bench.SPEECH_RECIPE.read_text())["model"]
    built = bench.with_istft_decoder(seeded_tiny())
    assert recipe["decoder"] == "istft"
    assert {key: getattr(built.config, key) for key in bench.ISTFT_KEYS} == {key: recipe[key] for key in bench.ISTFT_KEYS}
