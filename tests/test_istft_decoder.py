"""The inverse-STFT decoder: exact synthesis, causality, streaming, config checks and export parity.

The codec-level properties (prefix causality, streaming == offline, padding
invariance, training gradients, persistence) run for both decoders in
``tests/test_model.py`` through the ``any_decoder_codec`` fixture.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import chunks, fitted_model, tiny_config

from codec import export
from codec.errors import ConfigError
from codec.network.config import CodecConfig
from codec.network.istft_decoder import MAX_MAGNITUDE, ISTFTDecoder, OverlapAdd, PhaseIntegrator, analysis_frames
from codec.network.model import Codec
from codec.network.streaming import streaming

Speech = Callable[..., torch.Tensor]


@pytest.mark.parametrize(("n_fft", "hop"), [(640, 320), (1280, 320), (16, 8)], ids=["r2", "r4", "tiny"])
def test_overlap_add_of_analysed_speech_gives_the_speech_back(speech: Speech, n_fft: int, hop: int) -> None:
    """Spectra framed as the decoder places its frames overlap-add to the signal after the first window."""
    wav = speech(16000, index=0, seconds=1.0)[:, 0].double()  # [1, T]
    spectra = analysis_frames(wav, n_fft, hop)  # [1, F, K]
    synthesis = OverlapAdd(n_fft, hop).double()
    out = synthesis(torch.cat([spectra.real, spectra.imag], dim=-1))  # [1, 1, F * hop]
    start = n_fft - hop  # earlier samples lack the frames before the first one
    assert out.shape == (1, 1, wav.shape[-1] // hop * hop)
    torch.testing.assert_close(out[0, 0, start:], wav[0, start : out.shape[-1]], atol=1e-6, rtol=0)
    assert not torch.allclose(out[0, 0, :start], wav[0, :start])


@pytest.mark.parametrize("plan", [[1], [3, 1, 5], [10_000]], ids=["1-frame", "uneven", "whole"])
def test_overlap_add_streams_exactly(speech: Speech, plan: list[int]) -> None:
    n_fft, hop = 1280, 320
    spectra = analysis_frames(speech(16000, index=1, seconds=0.5)[:, 0], n_fft, hop)
    spectra = torch.cat([spectra.real, spectra.imag], dim=-1)  # [1, F, 2K]
    synthesis = OverlapAdd(n_fft, hop)
    whole = synthesis(spectra)
    with streaming(synthesis, 1):
        parts = [synthesis(spectra[:, s]) for s in chunks(spectra.shape[1], plan, 1)]
    torch.testing.assert_close(torch.cat(parts, dim=-1), whole, atol=1e-6, rtol=0)


def test_decoder_output_is_final_once_its_frame_is_in(speech: Speech) -> None:
    """Changing latent frames from ``m`` on leaves the first ``m`` blocks of audio exactly as they were."""
    model = fitted_model("istft")
    z = model.encoder(speech(model.sample_rate, index=0, seconds=0.25))  # [1, D, F]
    m, hop = 11, model.hop_length
    changed = z.clone()
    changed[..., m:] = torch.randn_like(changed[..., m:])
    with torch.no_grad():
        out, out_changed = model.decoder(z), model.decoder(changed)
    assert out.shape == (1, 1, z.shape[-1] * hop)
    torch.testing.assert_close(out_changed[..., : m * hop], out[..., : m * hop], atol=0, rtol=0)
    assert not torch.allclose(out_changed[..., m * hop :], out[..., m * hop :])


def test_magnitudes_are_capped_so_large_outputs_stay_finite() -> None:
    decoder = ISTFTDecoder(tiny_config("istft"))
    with torch.no_grad():
        decoder.head.bias.fill_(1e4)  # exp(1e4) overflows float32
        spectrum = decoder.spectrum(torch.randn(1, 8, 5))
        audio = decoder(torch.randn(1, 8, 5))
    assert torch.isfinite(spectrum).all() and torch.isfinite(audio).all()
    assert spectrum.abs().max() <= MAX_MAGNITUDE * (1 + 1e-6)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"decoder": "hifigan"}, "decoder must be 'seanet' or 'istft'"),
        ({"decoder": "istft", "n_fft": 12}, "multiple of the hop length 8"),
        ({"decoder": "istft", "decoder_layers": 0}, r"decoder_layers must be in \[1, 64\]"),
        ({"decoder": "istft", "channels": 2}, "one channel"),
        ({"decoder": "istft", "n_fft": 16, "decoder_phase": "recovered"}, r"overlapping by 3/4: n_fft 16 is under 4 hops of 8"),
        ({"decoder": "istft", "decoder_subframes": 3}, "decoder_subframes 3 must divide the hop length 8"),
        ({"decoder": "istft", "decoder_phase": "griffin-lim"}, "'absolute', 'integrated' or 'recovered'"),
    ],
    ids=["unknown", "n_fft-not-whole-hops", "no-layers", "stereo", "recovered-sparse-frames", "subframes",
         "unknown-phase"],
)
def test_config_errors_name_the_problem(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(tiny_config(), **changes)


def test_16khz_istft_decoder_size_and_frame_rate_work() -> None:
    """The recipe's size: about 7.5 M parameters, all of it at 50 frames per second."""
    config = CodecConfig(n_filters=16, dimension=64, decoder="istft", decoder_dim=384, decoder_layers=8, n_fft=640)
    decoder = ISTFTDecoder(config)
    params = sum(p.numel() for p in decoder.parameters())
    assert 7.0e6 < params < 8.0e6
    with torch.no_grad():
        assert decoder(torch.randn(2, 64, 7)).shape == (2, 1, 7 * 320)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Codec, dict[str, export.ExportedFiles]]:
    model = fitted_model("istft")
    files = export.export(model, tmp_path_factory.mktemp("istft"), bandwidth_kbps=model.bandwidths_kbps[2])
    return model, {f.format: f for f in files}


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_export_parity_on_speech(exported: tuple[Codec, dict], fmt: str, speech: Speech) -> None:
    model, files = exported
    wav = speech(model.sample_rate, index=0, seconds=2.0)
    parity = export.check_parity(model, files[fmt], wav, model.bandwidths_kbps[2])
    assert parity.codes_equal > 0.99 and parity.not_near_ties == 0
    assert parity.max_abs_diff < 1e-4
    assert parity.cosine > 0.99999


def test_save_and_load_keep_the_decoder(tmp_path: Path, speech: Speech) -> None:
    model = fitted_model("istft")
    model.save_pretrained(tmp_path / "m")
    loaded = Codec.from_pretrained(tmp_path / "m")
    assert isinstance(loaded.decoder, ISTFTDecoder) and loaded.model_id == model.model_id
    wav = speech(model.sample_rate, index=2, seconds=0.5)
    torch.testing.assert_close(loaded.decode(loaded.encode(wav)), model.decode(model.encode(wav)), atol=0, rtol=0)


def test_inference_layout_gives_the_training_layouts_numbers(speech: Speech) -> None:
    """Without autograd the decoder runs time-major (folded MLP weights, depthwise windows); it matches autograd."""
    model = fitted_model("istft")
    wav = speech(model.sample_rate, index=2, seconds=0.5)
    wav = torch.cat([wav, 0.5 * wav.flip(-1)])  # a batch of two
    with torch.no_grad():
        z = model.encoder(wav)
        y = model.decoder(z)
    y_ref = model.decoder(z.clone().requires_grad_())
    assert y_ref.requires_grad and not y.requires_grad
    torch.testing.assert_close(y, y_ref.detach(), atol=1e-5, rtol=1e-4)


def test_integrated_phase_is_the_running_sum_of_advances_in_any_chunks() -> None:
    """Zero deviations advance each bin by its nominal 2 pi k hop / n_fft; chunked sums equal the whole one,
    and an hour of frames keeps full precision (the sum runs in float64, wrapped)."""
    integrator = PhaseIntegrator(n_fft=640, hop_length=320)
    frames = 180_000  # one hour at 50 frames per second
    phase = integrator(torch.zeros(1, frames, 321))
    k = torch.arange(321, dtype=torch.float64)
    expected = torch.remainder(torch.pi * k * frames + torch.pi, 2 * torch.pi) - torch.pi  # advance pi k per frame
    assert torch.allclose(phase[0, -1].double(), expected, atol=1e-5)
    torch.manual_seed(0)
    deviation = torch.randn(2, 37, 321)
    whole = integrator(deviation)
    with streaming(integrator, batch_size=2):
        pieces = torch.cat([integrator(deviation[:, s]) for s in chunks(37, [1, 5, 11, 20], 1)], dim=1)
    assert torch.allclose(torch.polar(torch.ones_like(whole), whole), torch.polar(torch.ones_like(whole), pieces),
                          atol=1e-6)
    with pytest.raises(ConfigError, match="decoder_phase"):
        dataclasses.replace(tiny_config("istft"), decoder_phase="group_delay")
