"""Audio files: loading the real clips, resampling, atomic saving, bad files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import soundfile as sf
import torch

from codec import audio
from codec.errors import InputError

#: Largest error of a 16-bit round trip: half a step of 1 / 32768, with a margin for float rounding.
PCM16_TOLERANCE = 1 / 32768 + 1e-6


def test_load_real_clip(mono_clip: Path) -> None:
    wav, rate = audio.load(mono_clip)
    info = sf.info(str(mono_clip))
    assert rate == info.samplerate == 16000
    assert wav.shape == (1, info.frames)
    assert wav.dtype == torch.float32
    assert wav.abs().max() <= 1.0
    assert wav.pow(2).mean().sqrt() > 1e-3, "the clip should hold speech, not silence"


def test_load_keeps_every_channel(stereo_clip: Path) -> None:
    wav, rate = audio.load(stereo_clip)
    info = sf.info(str(stereo_clip))
    assert rate == info.samplerate == 44100
    assert wav.shape == (2, info.frames)


def test_resample_44k_stereo_to_16k_mono(stereo_clip: Path) -> None:
    stereo, _ = audio.load(stereo_clip)
    wav, rate = audio.load(stereo_clip, target_rate=16000, mono=True)
    assert rate == 16000
    assert wav.shape[0] == 1
    assert abs(wav.shape[-1] - stereo.shape[-1] * 16000 / 44100) <= 1
    # Mixing and resampling are both linear, so their order does not matter.
    expected = audio.resample(stereo.mean(dim=0, keepdim=True), 44100, 16000)
    torch.testing.assert_close(wav, expected, atol=1e-5, rtol=0)
    # Speech keeps most of its energy below 8 kHz.
    mono_rms = stereo.mean(dim=0).pow(2).mean().sqrt()
    assert wav.pow(2).mean().sqrt() == pytest.approx(float(mono_rms), rel=0.2)


def test_resample_is_a_no_op_at_the_same_rate() -> None:
    wav = torch.randn(1, 100)
    assert audio.resample(wav, 16000, 16000) is wav


@pytest.mark.parametrize("rates", [(0, 16000), (16000, -1)], ids=["zero-source", "negative-target"])
def test_resample_rejects_non_positive_rates(rates: tuple[int, int]) -> None:
    with pytest.raises(InputError, match="must be positive"):
        audio.resample(torch.randn(1, 100), *rates)


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".WAV"])
def test_save_load_round_trip(mono_clip: Path, stereo_clip: Path, tmp_path: Path, suffix: str) -> None:
    for source in (mono_clip, stereo_clip):
        wav, rate = audio.load(source)
        wav = wav[:, : rate // 2]
        path = tmp_path / f"copy{suffix}"
        audio.save(path, wav, rate)
        loaded, loaded_rate = audio.load(path)
        assert loaded_rate == rate
        assert loaded.shape == wav.shape
        assert (loaded - wav).abs().max() <= PCM16_TOLERANCE
        assert sorted(os.listdir(tmp_path)) == [path.name], "a temporary file was left behind"


def test_save_clips_to_the_valid_range(tmp_path: Path) -> None:
    path = tmp_path / "loud.wav"
    audio.save(path, torch.tensor([[2.0, -3.0, 0.5]]), 16000)
    loaded, _ = audio.load(path)
    assert loaded[0, 0] == pytest.approx(1.0, abs=PCM16_TOLERANCE)
    assert loaded[0, 1] == pytest.approx(-1.0, abs=PCM16_TOLERANCE)
    assert loaded[0, 2] == pytest.approx(0.5, abs=PCM16_TOLERANCE)


@pytest.mark.parametrize("name", ["out.mp4", "out.xyz", "out"])
def test_unknown_extension_raises_input_error(tmp_path: Path, name: str) -> None:
    with pytest.raises(InputError, match=r"\.wav, \.flac"):
        audio.save(tmp_path / name, torch.zeros(1, 10), 16000)
    assert os.listdir(tmp_path) == []


def test_save_rejects_a_batch_tensor(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"\[C, T\]"):
        audio.save(tmp_path / "out.wav", torch.zeros(1, 1, 10), 16000)
    assert os.listdir(tmp_path) == []


def test_failed_write_leaves_no_file_behind(
    mono_clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wav, rate = audio.load(mono_clip)
    target = tmp_path / "out.wav"
    audio.save(target, wav, rate)
    before = target.read_bytes()

    def half_write(path: str, *args: object, **kwargs: object) -> None:
        Path(path).write_bytes(b"RIFF partial")  # a write that dies halfway
        raise OSError("disk full")

    monkeypatch.setattr(audio.sf, "write", half_write)
    with pytest.raises(OSError, match="disk full"):
        audio.save(target, wav[:, :100], rate)
    with pytest.raises(OSError, match="disk full"):
        audio.save(tmp_path / "new.flac", wav, rate)
    assert os.listdir(tmp_path) == ["out.wav"]
    assert target.read_bytes() == before, "the existing file was damaged"


def test_missing_file_raises_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.wav does not exist"):
        audio.load(tmp_path / "nope.wav")


BAD_FILES = {
    "noise-bytes": bytes((i * 37 + i // 7) % 256 for i in range(2000)),
    "truncated-header": b"RIFF\x24\x00\x00\x00WAVEfmt ",
    "zero-bytes": b"",
    "text": b"this is not audio\n" * 20,
}


@pytest.mark.parametrize("content", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_corrupt_file_raises_input_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(InputError, match=r"cannot read audio file .*bad\.wav"):
        audio.load(path)
    with pytest.raises(InputError, match=r"cannot read audio file .*bad\.wav"):
        audio.read_info(path)


def test_file_without_samples_raises_input_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    sf.write(str(path), torch.zeros(0, 1).numpy(), 16000)
    with pytest.raises(InputError, match="holds no samples"):
        audio.load(path)


def test_read_info_of_a_real_clip(mono_clip: Path) -> None:
    info = audio.read_info(mono_clip)
    wav, rate = audio.load(mono_clip)
    assert (info.samplerate, info.channels, info.frames) == (rate, 1, wav.shape[-1])


@pytest.mark.parametrize("length", [100, 16000, 20000], ids=["crop", "same", "pad"])
def test_fit_length_crops_or_pads_on_the_right(mono_clip: Path, length: int) -> None:
    wav = audio.load(mono_clip)[0][..., :16000]  # [1, 16000]
    fitted = audio.fit_length(wav, length)
    assert fitted.shape == (1, length)
    kept = min(length, wav.shape[-1])
    assert torch.equal(fitted[..., :kept], wav[..., :kept]) and not fitted[..., kept:].any()
