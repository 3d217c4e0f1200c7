"""The compress / decompress / info / truncate commands on real speech files."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import data_wavs, long_speech

import codec.fileformat.entropy
import codec.network.model
from codec import audio, resolve
from codec.cli import main
from codec.fileformat import compress
from codec.fileformat.compress import LoadedModel, decode_stream, load_model, read_codes
from codec.fileformat.entropy import EntropyTables, fit_counts
from codec.network.model import Codec
from codec.network.presets import codec_tiny_config

#: Writing 16-bit PCM rounds each sample by at most about this much.
PCM16_ERROR = 1e-4


@pytest.fixture
def clip() -> Path:
    """The first mono speech clip of tests/data (tests that need not run on each)."""
    return data_wavs(channels=1)[0]


def _run(*args: object) -> int:
    return main([str(a) for a in args])


def _offline(model: Codec, wav: torch.Tensor, kbps: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes ``[C, n_q, F]`` and decoded audio ``[C, T]`` of ``wav`` [C, T] encoded whole, channels as a batch."""
    encoded = model.encode(wav[:, None, :], kbps)
    return encoded.codes, model.decode(encoded)[:, 0]


def test_round_trip_at_every_bitrate(mono_clip: Path, model_dir: Path, tmp_path: Path) -> None:
    loaded = load_model(model_dir)
    wav, rate = audio.load(mono_clip)  # [1, T] at 16 kHz
    for kbps in loaded.codec.bandwidths_kbps:
        packed, restored = tmp_path / f"{kbps:g}.rvq", tmp_path / f"{kbps:g}.flac"
        assert _run("compress", mono_clip, packed, "--kbps", kbps, "--model", model_dir, "--quiet") == 0
        assert _run("decompress", packed, restored, "--model", model_dir, "--quiet") == 0
        info = sf.info(str(restored))
        assert (info.samplerate, info.channels, info.frames) == (rate, 1, wav.shape[-1])
        codes, decoded = _offline(loaded.codec, wav, kbps)
        header, file_codes = read_codes(packed, loaded)
        assert header.n_q == codes.shape[1] and torch.equal(file_codes, codes)
        out, _ = audio.load(restored)
        assert (out - decoded.clamp(-1, 1)).abs().max() <= PCM16_ERROR


def test_stereo_44khz_file_keeps_its_rate_and_channels(stereo_clip: Path, model_dir: Path, tmp_path: Path) -> None:
    loaded = load_model(model_dir)
    wav, rate = audio.load(stereo_clip)  # [2, T] at 44.1 kHz
    model_rate = loaded.codec.sample_rate
    for kbps in (loaded.codec.bandwidths_kbps[0], None):
        packed, restored = tmp_path / "stereo.rvq", tmp_path / "stereo.wav"
        extra = [] if kbps is None else ["--kbps", kbps]
        assert _run("compress", stereo_clip, packed, "--model", model_dir, "--quiet", *extra) == 0
        assert _run("decompress", packed, restored, "--model", model_dir, "--quiet") == 0
        info = sf.info(str(restored))
        assert (info.samplerate, info.channels, info.frames) == (44100, 2, wav.shape[-1])
        codes, decoded = _offline(loaded.codec, audio.resample(wav, rate, model_rate), kbps)
        assert torch.equal(read_codes(packed, loaded)[1], codes)
        expected = audio.resample(decoded, model_rate, rate)[:, : wav.shape[-1]]
        out, _ = audio.load(restored)
        assert (out - expected.clamp(-1, 1)).abs().max() <= PCM16_ERROR


def _hop320_model() -> Codec:
    """A tiny model at a realistic frame rate: hop 320 (50 Hz), 10-bit codes."""
    torch.manual_seed(0)
    config = dataclasses.replace(codec_tiny_config(), ratios=(8, 5, 4, 2), codebook_size=1024)
    return Codec(config).eval()


@pytest.mark.parametrize("which", ["fitted-hop8", "hop320"])
@pytest.mark.parametrize("decode_seconds", [0.5, 2.0, 10.0])
def test_chunked_decode_equals_offline_decode(
    which: str, decode_seconds: float, fitted_codec: Codec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decoding one chunk, two chunks or the whole file per call gives the offline audio."""
    monkeypatch.setattr(compress, "DECODE_SECONDS", decode_seconds)
    model = fitted_codec if which == "fitted-hop8" else _hop320_model()
    loaded = LoadedModel.from_codec(model)
    source = long_speech(tmp_path, 3.7)  # 4 chunks of one second, the last partial
    packed = tmp_path / "long.rvq"
    header = compress.compress(source, packed, loaded, entropy_coding=which == "hop320")
    assert header.num_chunks == 4
    wav, _ = audio.load(source)
    codes, decoded = _offline(model, wav, None)
    assert torch.equal(read_codes(packed, loaded)[1], codes)
    with open(packed, "rb") as f:
        streamed = torch.cat(list(decode_stream(f, compress.bitstream.read_header(f), loaded)), dim=-1)
    assert streamed.shape == decoded.shape
    assert (streamed - decoded).abs().max() <= 1e-5


@pytest.mark.parametrize("entropy", [True, False], ids=["entropy", "bit-packed"])
def test_truncate_equals_compressing_at_the_lower_bitrate(
    entropy: bool, stereo_clip: Path, model_dir: Path, tmp_path: Path
) -> None:
    rates = load_model(model_dir).codec.bandwidths_kbps
    no_entropy = [] if entropy else ["--no-entropy"]
    full = tmp_path / "full.rvq"
    assert _run("compress", stereo_clip, full, "--model", model_dir, "--quiet", *no_entropy) == 0
    for kbps in rates[:-1]:
        cut, direct = tmp_path / f"cut{kbps:g}.rvq", tmp_path / f"direct{kbps:g}.rvq"
        assert _run("truncate", full, cut, "--kbps", kbps) == 0
        assert _run("compress", stereo_clip, direct, "--model", model_dir, "--kbps", kbps, "--quiet", *no_entropy) == 0
        assert cut.read_bytes() == direct.read_bytes()
        assert cut.stat().st_size < full.stat().st_size
        for name in ("cut", "direct"):
            assert _run("decompress", tmp_path / f"{name}{kbps:g}.rvq", tmp_path / f"{name}.wav",
                        "--model", model_dir, "--quiet") == 0
        assert np.array_equal(sf.read(tmp_path / "cut.wav")[0], sf.read(tmp_path / "direct.wav")[0])


def test_info_prints_the_fields(stereo_clip: Path, model_dir: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    packed = tmp_path / "x.rvq"
    assert _run("compress", stereo_clip, packed, "--model", model_dir, "--kbps", 24, "--quiet") == 0
    capsys.readouterr()
    assert _run("info", packed) == 0
    lines = dict(line.split(":", 1) for line in capsys.readouterr().out.splitlines())
    frames = sf.info(str(stereo_clip)).frames
    model_id = load_model(model_dir).model_id
    assert lines["model"].strip() == f"codec-tiny (id {model_id})"
    assert lines["sample rate"].strip() == "44100 Hz (model: 16000 Hz)"
    assert lines["channels"].strip() == "2"
    assert lines["duration"].strip() == f"{frames / 44100:.3f} s ({frames} samples)"
    assert lines["codebooks"].strip() == "2 x 64 entries"
    assert lines["bitrate"].strip() == "24 kbps per channel, 48 kbps in all (nominal)"
    assert lines["entropy coding"].strip().startswith("yes (tables ")
    measured = packed.stat().st_size * 8 / (frames / 44100)
    assert lines["measured"].strip() == f"{measured:.0f} bits per second ({packed.stat().st_size} bytes)"


class _Pipe(io.BytesIO):
    """Bytes that can only be read in order, like a pipe."""

    def seekable(self) -> bool:
        return False

    def seek(self, *args: object) -> int:
        raise io.UnsupportedOperation("seek")

    def tell(self) -> int:
        raise io.UnsupportedOperation("tell")


def _piped(monkeypatch: pytest.MonkeyPatch, stdin: bytes, *args: object) -> bytes:
    """Runs the command with ``stdin`` as a pipe on standard input; returns what it wrote to standard output."""
    out = io.BytesIO()
    with monkeypatch.context() as m:
        m.setattr(sys, "stdin", io.TextIOWrapper(_Pipe(stdin)))
        m.setattr(sys, "stdout", io.TextIOWrapper(out))
        assert _run(*args) == 0
        sys.stdout.flush()
        return out.getvalue()


def test_dash_reads_stdin_and_writes_stdout(
    clip: Path, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference, restored = tmp_path / "ref.rvq", tmp_path / "ref.wav"
    assert _run("compress", clip, reference, "--model", model_dir, "--quiet") == 0
    assert _run("decompress", reference, restored, "--model", model_dir, "--quiet") == 0
    packed = _piped(monkeypatch, clip.read_bytes(), "compress", "-", "-", "--model", model_dir, "--quiet")
    assert packed == reference.read_bytes()
    decoded = _piped(monkeypatch, packed, "decompress", "-", "-", "--model", model_dir, "--quiet")
    assert decoded == restored.read_bytes()
    lowest = load_model(model_dir).codec.bandwidths_kbps[0]
    (tmp_path / "cut.rvq").write_bytes(_piped(monkeypatch, packed, "truncate", "-", "-", "--kbps", lowest))
    assert read_codes(tmp_path / "cut.rvq", model_dir)[1].shape[1] == 1
    assert b"channels:       1" in _piped(monkeypatch, packed, "info", "-")


def _flac_of_unknown_length(path: Path) -> bytes:
    """``path`` as FLAC whose stream info says "length unknown", as ffmpeg writes FLAC to a pipe."""
    data, rate = sf.read(str(path), dtype="int16")
    buffer = io.BytesIO()
    sf.write(buffer, data, rate, format="FLAC", subtype="PCM_16")
    flac = bytearray(buffer.getvalue())
    assert flac[:4] == b"fLaC" and flac[4] & 0x7F == 0  # the first metadata block is the stream info
    packed = int.from_bytes(flac[18:26], "big")  # rate (20 bits), channels, bits, total samples (36 bits)
    assert packed & ((1 << 36) - 1) == len(data)
    flac[18:26] = (packed >> 36 << 36).to_bytes(8, "big")
    return bytes(flac)


def test_stdin_of_unknown_length(stereo_clip: Path, model_dir: Path, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    reference = tmp_path / "ref.rvq"
    assert _run("compress", stereo_clip, reference, "--model", model_dir, "--quiet") == 0
    flac = _flac_of_unknown_length(stereo_clip)
    assert sf.info(io.BytesIO(flac)).frames > 1 << 62  # soundfile cannot tell the length
    assert _piped(monkeypatch, flac, "compress", "-", "-", "--model", model_dir) == reference.read_bytes()


def _flip_bit(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _corrupt_last_chunk(path: Path) -> None:
    _flip_bit(path, -10)


def _corrupt_first_chunk(path: Path) -> None:
    header_bytes = len(compress.bitstream.header_bytes(read_codes(path, path.parent / "model")[0]))
    _flip_bit(path, header_bytes + 20)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing-input", "does not exist"),
        ("not-audio", "cannot read audio"),
        ("bad-kbps", "bandwidth 5 kbps is not supported; choose one of: 12, 24, 36, 48"),
        ("bad-extension", "cannot choose an audio format"),
        ("corrupt", "chunk 0: checksum mismatch"),
        ("other-model", "the file was written by model 'codec-tiny' (id "),
        ("no-default-model", "the default model 'no-such-model' is not installed; pass --model"),
        ("not-bundled", "which is not bundled with rvq-codec; pass --model"),
        ("truncate-up", "choose one of: 12, 24"),
        ("not-rvq", "not an rvq-codec file"),
    ],
)
def test_user_errors_exit_2_with_one_line(
    case: str, message: str, clip: Path, model_dir: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    packed = tmp_path / "ok.rvq"
    assert _run("compress", clip, packed, "--model", model_dir, "--kbps", 24, "--quiet") == 0
    text = tmp_path / "notes.txt"
    text.write_text("not audio\n")
    other = tmp_path / "other"
    torch.manual_seed(1)
    Codec(codec_tiny_config()).save_pretrained(other)
    monkeypatch.setattr(resolve, "DEFAULT_MODEL", "no-such-model")
    if case == "corrupt":
        _corrupt_first_chunk(packed)
    args = {
        "missing-input": ["compress", tmp_path / "nope.wav", tmp_path / "x.rvq", "--model", model_dir],
        "not-audio": ["compress", text, tmp_path / "x.rvq", "--model", model_dir],
        "bad-kbps": ["compress", clip, tmp_path / "x.rvq", "--model", model_dir, "--kbps", 5],
        "bad-extension": ["decompress", packed, tmp_path / "x.mp4", "--model", model_dir],
        "corrupt": ["decompress", packed, tmp_path / "x.wav", "--model", model_dir],
        "other-model": ["decompress", packed, tmp_path / "x.wav", "--model", other],
        "no-default-model": ["compress", clip, tmp_path / "x.rvq"],
        "not-bundled": ["decompress", packed, tmp_path / "x.wav"],
        "truncate-up": ["truncate", packed, tmp_path / "x.rvq", "--kbps", 36],
        "not-rvq": ["info", text],
    }[case]
    capsys.readouterr()
    assert _run(*args, *(["--quiet"] if args[0] in ("compress", "decompress") else [])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"codec {args[0]}: error: ")
    assert message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "notes.txt", "ok.rvq", "other"]


def test_more_channels_than_the_format_holds_are_refused(
    clip: Path, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, rate = sf.read(str(clip))
    sf.write(str(tmp_path / "nine.wav"), np.stack([data] * 9, axis=1), rate)
    assert _run("compress", tmp_path / "nine.wav", tmp_path / "nine.rvq", "--model", model_dir) == 2
    assert "has 9 channels; the format holds 1 to 8" in capsys.readouterr().err
    assert not (tmp_path / "nine.rvq").exists()


def test_other_entropy_tables_are_refused(
    clip: Path, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uniform_file, fitted_file = tmp_path / "uniform.rvq", tmp_path / "fitted.rvq"
    assert _run("compress", clip, uniform_file, "--model", model_dir, "--quiet") == 0
    loaded = load_model(model_dir)
    wav, _ = audio.load(clip)
    config = loaded.codec.config
    EntropyTables(fit_counts([_offline(loaded.codec, wav, None)[0]], config.n_q, config.codebook_size)).save(model_dir)
    assert _run("compress", clip, fitted_file, "--model", model_dir, "--quiet") == 0
    assert fitted_file.stat().st_size < uniform_file.stat().st_size
    assert _run("decompress", fitted_file, tmp_path / "ok.wav", "--model", model_dir, "--quiet") == 0
    capsys.readouterr()
    assert _run("decompress", uniform_file, tmp_path / "no.wav", "--model", model_dir, "--quiet") == 2
    assert "entropy-coded with tables" in capsys.readouterr().err
    assert not (tmp_path / "no.wav").exists()


def test_interrupted_compress_leaves_nothing(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = long_speech(tmp_path, 2.5)
    target = tmp_path / "out.rvq"
    target.write_bytes(b"previous content")
    calls = []

    def interrupt_second_chunk(*args: object) -> list[bytes]:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    real = codec.fileformat.entropy.encode_codes
    monkeypatch.setattr(codec.fileformat.entropy, "encode_codes", interrupt_second_chunk)  # compress imports it when it runs
    before = sorted(p.name for p in tmp_path.iterdir())
    assert _run("compress", source, target, "--model", model_dir, "--quiet") == 130
    assert target.read_bytes() == b"previous content"
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_progress_bar_on_long_files_unless_quiet(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = long_speech(tmp_path, compress.PROGRESS_MIN_SECONDS + 1)
    assert _run("compress", source, tmp_path / "a.rvq", "--model", model_dir) == 0
    assert "%|" in capsys.readouterr().err
    assert _run("compress", source, tmp_path / "b.rvq", "--model", model_dir, "--quiet") == 0
    assert capsys.readouterr().err == ""


def test_decompress_uses_the_bundled_model_named_in_the_file(
    clip: Path, fitted_codec: Codec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundled = tmp_path / "pretrained"
    fitted_codec.save_pretrained(bundled / "tiny-bundled")
    monkeypatch.setattr(codec.network.model, "PRETRAINED_DIR", bundled)
    packed = tmp_path / "x.rvq"
    assert _run("compress", clip, packed, "--model", "tiny-bundled", "--quiet") == 0
    assert read_codes(packed)[0].model_name == "tiny-bundled"
    assert _run("decompress", packed, tmp_path / "x.wav", "--quiet") == 0
    assert sf.info(str(tmp_path / "x.wav")).frames == sf.info(str(clip)).frames


def _codec_command() -> str:
    return str(Path(sys.executable).parent / "codec")


def test_command_exit_status_and_message_without_traceback(clip: Path, model_dir: Path, tmp_path: Path) -> None:
    packed = tmp_path / "x.rvq"
    assert _run("compress", clip, packed, "--model", model_dir, "--quiet") == 0
    _corrupt_last_chunk(packed)
    command = [_codec_command(), "decompress", packed, tmp_path / "x.wav", "--model", model_dir, "--quiet"]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("codec decompress: error: chunk ")
    assert not (tmp_path / "x.wav").exists()


def test_threads_flag(clip: Path, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--threads`` sets torch's threads for the command (1 by default); anything below 1 is refused by name."""
    before = torch.get_num_threads()
    packed = tmp_path / "x.rvq"
    try:
        assert _run("compress", clip, packed, "--model", model_dir, "--quiet") == 0
        assert torch.get_num_threads() == 1
        assert _run("decompress", packed, tmp_path / "x.wav", "--model", model_dir, "--threads", 2, "--quiet") == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    for bad in ("0", "two"):
        with pytest.raises(SystemExit) as exited:
            _run("compress", clip, tmp_path / "y.rvq", "--model", model_dir, "--threads", bad)
        assert exited.value.code == 2
        assert f"expected a whole number of threads of at least 1, got '{bad}'" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "x.rvq", "x.wav"]
