"""ONNX and TorchScript export: parity with PyTorch on real speech, dynamic shapes, half precision."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch.nn.utils import parametrize

from codec import export
from codec.cli import main
from codec.errors import InputError
from codec.network.model import Codec
from codec.network.presets import codec_tiny_config

Speech = Callable[..., torch.Tensor]
N_Q = 3


@pytest.fixture(scope="module")
def model(_fitted_state: dict[str, torch.Tensor]) -> Codec:
    """A tiny model whose codebooks fit real speech, so that codes vary."""
    model = Codec(codec_tiny_config())
    model.load_state_dict(_fitted_state)
    return model.eval()


@pytest.fixture(scope="module")
def files(model: Codec, tmp_path_factory: pytest.TempPathFactory) -> dict[str, export.ExportedFiles]:
    """The model exported once in both formats at ``N_Q`` codebooks, with dynamic shapes."""
    written = export.export(model, tmp_path_factory.mktemp("export"), bandwidth_kbps=model.bandwidths_kbps[N_Q - 1])
    return {f.format: f for f in written}


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_parity_with_pytorch_on_speech(model: Codec, files: dict, fmt: str, speech: Speech) -> None:
    wav = speech(model.sample_rate, index=0, seconds=2.0)
    parity = export.check_parity(model, files[fmt], wav, model.bandwidths_kbps[N_Q - 1])
    assert parity.n_codes == N_Q * wav.shape[-1] // model.hop_length
    assert parity.codes_equal > 0.99 and parity.not_near_ties == 0
    assert parity.max_abs_diff < 1e-4
    assert parity.cosine > 0.99999


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_dynamic_batch_and_lengths(model: Codec, files: dict, fmt: str, speech: Speech) -> None:
    encoder, decoder = export.load_runner(files[fmt].encoder), export.load_runner(files[fmt].decoder)
    clip = speech(model.sample_rate, index=1, seconds=1.0)
    for batch, length in ((1, 4003), (2, 11_200)):  # neither a multiple of the hop, nor the traced length
        wav = torch.cat([clip[..., :length], clip[..., -length:]])[:batch]
        codes = encoder(wav)
        expected = model.encode(wav, bandwidth_kbps=model.bandwidths_kbps[N_Q - 1]).codes
        assert codes.shape == (batch, N_Q, -(-length // model.hop_length))
        assert (codes == expected).double().mean() > 0.99
        assert export.count_real_differences(model, wav, expected, codes) == 0
        decoded = decoder(expected)
        assert decoded.shape == (batch, 1, codes.shape[-1] * model.hop_length)
        assert (decoded - model.decode(expected)).abs().max() < 1e-4


def test_real_code_differences_are_told_from_near_ties(model: Codec, speech: Speech) -> None:
    wav = speech(model.sample_rate, index=1, seconds=0.5)
    codes = model.encode(wav).codes  # [1, n_q, F]
    assert export.count_real_differences(model, wav, codes, codes.clone()) == 0
    wrong = codes.clone()
    wrong[:, 1, ::10] = (wrong[:, 1, ::10] + 1) % model.config.codebook_size  # every 10th frame, second codebook
    changed = int((wrong != codes).sum())
    assert export.count_real_differences(model, wav, codes, wrong) >= 0.9 * changed


def test_fixed_length_export(model: Codec, tmp_path: Path, speech: Speech) -> None:
    length = 8 * model.hop_length
    (onnx,) = export.export(model, tmp_path, ("onnx",), fixed_samples=length)
    wav = speech(model.sample_rate, index=2, seconds=1.0)[..., :length]
    assert export.check_parity(model, onnx, wav).not_near_ties == 0
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        export.load_runner(onnx.encoder)(wav[..., : length // 2])


def test_export_leaves_the_model_untouched(model: Codec, speech: Speech) -> None:
    wav = speech(model.sample_rate, index=0, seconds=0.5)
    before = model.decode(model.encode(wav))
    ready = export.prepare_for_export(model)
    assert not any(parametrize.is_parametrized(m) for m in ready.modules())
    assert any(parametrize.is_parametrized(m) for m in model.modules())
    assert torch.equal(model.decode(model.encode(wav)), before)
    assert (ready.decode(ready.encode(wav)) - before).abs().max() < 1e-5


def test_bad_format_and_length(model: Codec, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="onnx, torchscript"):
        export.export(model, tmp_path, ("tflite",))
    with pytest.raises(InputError, match="one frame"):
        export.export(model, tmp_path, fixed_samples=model.hop_length - 1)


def test_precision_on_long_speech(speech: Speech) -> None:
    torch.manual_seed(0)
    config = dataclasses.replace(codec_tiny_config(), ratios=(8, 5), quantizer_dropout=False)  # hop 40: quicker
    model = Codec(config).train()
    with torch.no_grad():
        model(speech(config.sample_rate, index=0, seconds=1.0))  # k-means codebooks on speech latents
    model.eval()
    paths = sorted((Path(__file__).parent / "data").glob("*.wav"))
    wav = export.load_long_speech(paths, model.sample_rate, seconds=31.0)
    assert wav.shape == (1, 1, 31 * model.sample_rate)
    _, reports = export.check_precision(model, wav)
    assert [r.dtype for r in reports] == ["float16", "bfloat16"]
    for report in reports:
        if report.error:  # float16 lacks CPU kernels on some machines; the report says so
            assert report.dtype == "float16"
            continue
        assert 0.0 < report.codes_equal <= 1.0 and 0.0 < report.first_codebook_equal <= 1.0
        assert report.decoder_snr_db > 20 and report.end_to_end_snr_db > 0 and report.seconds > 0
    assert export.snr_db(wav, wav) == float("inf")


def test_cli_prints_parity(model: Codec, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model.save_pretrained(tmp_path / "model")
    clip = min((Path(__file__).parent / "data").glob("*.wav"))
    argv = ["export", str(tmp_path / "out"), "--model", str(tmp_path / "model"), "--audio", str(clip)]
    assert main([*argv, "--format", "onnx", "--kbps", str(model.bandwidths_kbps[0])]) == 0
    out = capsys.readouterr().out
    assert "onnx" in out and "(0 differ beyond near ties)" in out and "cosine 1.000000" in out
    assert (tmp_path / "out" / "encoder.onnx").is_file() and not (tmp_path / "out" / "encoder.pt").exists()
    info = json.loads((tmp_path / "out" / "export.json").read_text())
    assert (info["n_q"], info["model_id"], info["samples"]) == (1, model.model_id, None)
