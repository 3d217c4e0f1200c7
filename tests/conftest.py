"""Shared fixtures: seeded tiny models and the real speech clips of ``tests/data``.

``tests/data`` holds 16 kHz mono speech WAVs and one 44.1 kHz stereo file
(see ``tests/data/README.md``). Tests read audio only from there.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path

import pytest
import soundfile as sf
import torch

from codec import audio
from codec.fileformat.onnx_decode import CACHE_ENV
from codec.network.config import CodecConfig
from codec.network.harmonic_source import PITCH_BINS
from codec.network.model import Codec
from codec.network.presets import codec_tiny, codec_tiny_config

DATA_DIR = Path(__file__).parent / "data"
SEED = 0

# The test models are tiny: one thread runs them fastest and leaves the other core to the rest of the machine.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _no_decoder_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decompression in tests decodes with PyTorch and caches nothing in the home folder; the tests of the
    onnxruntime decoder (tests/test_onnx_decode.py) point the cache at a temporary folder themselves."""
    monkeypatch.setenv(CACHE_ENV, "")


def data_wavs(channels: int) -> list[Path]:
    """WAV files of ``tests/data`` with ``channels`` channels, sorted by name.

    Fails (rather than skips) when there is none: the tests need real audio.
    """
    paths = [p for p in sorted(DATA_DIR.glob("*.wav")) if sf.info(str(p)).channels == channels]
    if not paths:
        pytest.fail(f"no {channels}-channel WAV in {DATA_DIR}; the tests need the clips of tests/data/README.md")
    return paths


def load_speech(sample_rate: int, index: int = 0, seconds: float | None = None) -> torch.Tensor:
    """A real mono speech clip of ``tests/data`` as ``[1, 1, T]`` at ``sample_rate``.

    Args:
        sample_rate: Rate to resample the clip to.
        index: Which clip (sorted by file name, wrapping around).
        seconds: If given, the middle ``seconds`` of the clip (where the speech is).

    Returns:
        Audio ``[1, 1, T]`` float32.
    """
    paths = data_wavs(channels=1)
    wav, _ = audio.load(paths[index % len(paths)], target_rate=sample_rate, mono=True)  # [1, T]
    if seconds is not None:
        n = int(seconds * sample_rate)
        if n > wav.shape[-1]:
            pytest.fail(f"{paths[index % len(paths)].name} is shorter than {seconds} s")
        start = (wav.shape[-1] - n) // 2
        wav = wav[:, start : start + n]
    return wav[None]  # [1, 1, T]


def long_speech(folder: Path, seconds: float) -> Path:
    """The mono clips of tests/data concatenated (and repeated) to ``seconds``, as a 16 kHz WAV in ``folder``."""
    clips = [audio.load(p, target_rate=16000)[0] for p in data_wavs(channels=1)]
    wav = torch.cat(clips * int(seconds * 16000 // sum(c.shape[-1] for c in clips) + 1), dim=-1)
    path = folder / f"speech_{seconds:g}s.wav"
    audio.save(path, wav[:, : int(seconds * 16000)], 16000)
    return path


def chunks(total: int, plan: list[int], step: int) -> list[slice]:
    """Slices covering ``range(total)`` by repeating ``plan`` (sizes in units of ``step``)."""
    out, start, i = [], 0, 0
    while start < total:
        end = min(start + plan[i % len(plan)] * step, total)
        out.append(slice(start, end))
        start, i = end, i + 1
    return out


def seeded_tiny() -> Codec:
    """``codec_tiny()`` built after seeding torch, in eval mode."""
    torch.manual_seed(SEED)
    return codec_tiny().eval()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Runs a test that takes ``mono_clip`` once per mono WAV of ``tests/data``."""
    if "mono_clip" in metafunc.fixturenames:
        paths = data_wavs(channels=1)
        metafunc.parametrize("mono_clip", paths, ids=[p.name for p in paths])


@pytest.fixture
def stereo_clip() -> Path:
    """The stereo (44.1 kHz) WAV of ``tests/data``."""
    return data_wavs(channels=2)[0]


@pytest.fixture
def speech() -> Callable[..., torch.Tensor]:
    """:func:`load_speech`: ``speech(sample_rate, index=0, seconds=None)`` gives ``[1, 1, T]``."""
    return load_speech


@pytest.fixture
def tiny_codec() -> Codec:
    """A fresh seeded ``codec_tiny()`` model in eval mode (random codebooks)."""
    return seeded_tiny()


def tiny_config(decoder: str = "seanet") -> CodecConfig:
    """``codec_tiny_config()`` with the SEANet decoder or a small inverse-STFT one (n_fft = 2 hops);
    ``"istft-integrated"`` is the latter predicting phase advances (``decoder_phase: integrated``), and
    ``"istft-recovered"`` predicting magnitudes of two frames per hop, whose phases it recovers, and
    ``"istft-harmonic"`` adding harmonics of a predicted fundamental (``decoder_harmonics``)."""
    config = codec_tiny_config()
    if decoder.startswith("istft"):
        phase = {"istft-integrated": "integrated", "istft-recovered": "recovered"}.get(decoder, "absolute")
        config = dataclasses.replace(config, decoder="istft", decoder_dim=16, decoder_layers=2,
                                     n_fft=2 * config.hop_length, decoder_phase=phase,
                                     decoder_subframes=2 if phase == "recovered" else 1,
                                     decoder_harmonics=decoder == "istft-harmonic")
    return config


@functools.cache
def fitted_state(decoder: str = "seanet") -> dict[str, torch.Tensor]:
    """State of a tiny model whose codebooks were k-means-initialised on real speech (built once per decoder)."""
    torch.manual_seed(SEED)
    config = dataclasses.replace(tiny_config(decoder), quantizer_dropout=False)  # so every level sees data
    model = Codec(config).train()
    with torch.no_grad():
        model(load_speech(config.sample_rate, index=0, seconds=1.0))
        if config.decoder_harmonics:  # harmonics as loud as the rest of the spectrum, so that they count,
            bins = config.n_fft // 2 + 1  # of a fundamental near 140 Hz that the latent moves, as a trained one
            model.decoder.source_head.bias[:bins] = -2.0
            model.decoder.source_head.bias[bins:-1] = -0.05 * (torch.arange(PITCH_BINS) - 72.0) ** 2
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="session")
def _fitted_state() -> dict[str, torch.Tensor]:
    """State of a tiny SEANet model whose codebooks were k-means-initialised on real speech."""
    return fitted_state("seanet")


def fitted_model(decoder: str) -> Codec:
    """A seeded tiny model in eval mode with ``decoder`` whose codebooks fit real speech latents."""
    torch.manual_seed(SEED)
    model = Codec(tiny_config(decoder)).eval()
    model.load_state_dict(fitted_state(decoder))
    return model


@pytest.fixture
def fitted_codec() -> Codec:
    """A seeded ``codec_tiny()`` in eval mode whose codebooks fit real speech latents.

    Random codebooks give only a handful of distinct codes; fitted ones give
    varied codes, so tests comparing codes can fail.
    """
    return fitted_model("seanet")


def drift_atol(model: Codec, atol: float) -> float:
    """``atol`` for two decodings of the same codes by different call layouts (streamed, batched, exported).

    With ``decoder_harmonics``, 2e-3: the running phase of the fundamental sums
    every frame's predicted f0, whose float rounding differs between layouts
    (about 3e-7 relative), and harmonic ``h`` multiplies that phase drift by
    ``h`` (up to 6.5e-4 over the 2,000 frames of a tiny model's second,
    against output peaks of about 0.4; a lost state errs by the whole signal).
    """
    return 2e-3 if model.config.decoder_harmonics else atol


@pytest.fixture(params=["seanet", "istft", "istft-integrated", "istft-recovered", "istft-harmonic"])
def any_decoder_codec(request: pytest.FixtureRequest) -> Codec:
    """:func:`fitted_codec` once with each decoder (``CodecConfig.decoder``)."""
    return fitted_model(request.param)


@pytest.fixture
def model_dir(tmp_path: Path, fitted_codec: Codec) -> Path:
    """:func:`fitted_codec` saved by ``save_pretrained`` (no entropy tables, so uniform ones)."""
    path = tmp_path / "model"
    fitted_codec.save_pretrained(path)
    return path
