"""The Codec API: shapes, bitrates, causality, streaming, padding, errors, persistence."""

from __future__ import annotations

import functools
import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import chunks, drift_atol
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from codec.cli import main
from codec.errors import BandwidthError, CodecError, InputError, ModelFileError, ModelNotFoundError, SampleRateError
from codec.network.config import CODEC_BOUNDS
from codec.network.istft_decoder import ConvNeXtBlock
from codec.network.model import Codec, EncodedAudio
from codec.network.presets import PRESETS
from codec.network.streaming import streaming_modules

Speech = Callable[..., torch.Tensor]


@functools.cache
def preset_model(name: str) -> Codec:
    """An untrained, seeded model of preset ``name`` in eval mode (built once per session)."""
    torch.manual_seed(0)
    return Codec(PRESETS[name]()).eval()


def two_clips(speech: Speech, sample_rate: int, length: int) -> torch.Tensor:
    """Two different real speech clips of ``length`` samples as a batch ``[2, 1, length]``."""
    clips = [speech(sample_rate, index=i, seconds=1.0)[..., 2000 : 2000 + length] for i in range(2)]
    return torch.cat(clips)


# ----- shapes and lengths ----------------------------------------------------------------------
#: Input lengths per preset: the big ones get short inputs only. None is a multiple of the hop but the first.
LENGTHS = {"tiny": [8, 1, 7, 9, 1603], "16khz": [320, 1, 319, 961], "24khz": [320, 1, 481, 961]}
SHAPE_CASES = [(name, n) for name, lengths in LENGTHS.items() for n in lengths]


@pytest.mark.parametrize(("preset", "length"), SHAPE_CASES, ids=[f"{p}-T{n}" for p, n in SHAPE_CASES])
def test_shapes_and_lengths(preset: str, length: int, speech: Speech) -> None:
    model = preset_model(preset)
    config = model.config
    wav = two_clips(speech, config.sample_rate, length)
    frames = math.ceil(length / config.hop_length)

    encoded = model.encode(wav)
    assert encoded.codes.shape == (2, config.n_q, frames)
    assert encoded.codes.dtype == torch.int64
    assert 0 <= int(encoded.codes.min()) and int(encoded.codes.max()) < config.codebook_size
    assert encoded.lengths.tolist() == [length, length]
    assert encoded.frame_lengths.tolist() == [frames, frames]

    with torch.no_grad():
        latent = model.encoder(torch.nn.functional.pad(wav, (0, frames * config.hop_length - length)))
        assert latent.shape == (2, config.dimension, frames)
        assert model.decoder(latent).shape == (2, config.channels, frames * config.hop_length)
    assert model.decode(encoded.codes).shape == (2, config.channels, frames * config.hop_length)
    decoded = model.decode(encoded)
    assert decoded.shape == wav.shape
    assert torch.isfinite(decoded).all()


@pytest.mark.parametrize("preset", PRESETS, ids=PRESETS.keys())
def test_every_bandwidth_encodes_with_its_codebook_count(preset: str, speech: Speech) -> None:
    model = preset_model(preset)
    wav = speech(model.sample_rate, seconds=0.05)
    for n, kbps in enumerate(model.bandwidths_kbps, start=1):
        encoded = model.encode(wav, bandwidth_kbps=kbps)
        assert encoded.n_q == n
        assert model.decode(encoded).shape == wav.shape


# ----- bitrate arithmetic ----------------------------------------------------------------------
EXPECTED_KBPS = {
    "tiny": [12.0 * n for n in range(1, 5)],  # 2000 Hz x 6 bits
    "16khz": [0.5 * n for n in range(1, 9)],  # 50 Hz x 10 bits
    "24khz": [0.75 * n for n in range(1, 9)],  # 75 Hz x 10 bits
}
EXPECTED_FRAME_RATE_HZ = {"tiny": 2000.0, "16khz": 50.0, "24khz": 75.0}


@pytest.mark.parametrize("preset", PRESETS, ids=PRESETS.keys())
def test_bitrate_arithmetic(preset: str) -> None:
    model = preset_model(preset)
    assert model.frame_rate_hz == EXPECTED_FRAME_RATE_HZ[preset]
    assert model.bandwidths_kbps == pytest.approx(EXPECTED_KBPS[preset])
    for n, kbps in enumerate(EXPECTED_KBPS[preset], start=1):
        assert model.n_q_for_bandwidth(kbps) == n
    assert model.n_q_for_bandwidth(None) == model.config.n_q


@pytest.mark.parametrize("preset", PRESETS, ids=PRESETS.keys())
def test_unsupported_bandwidth_lists_the_supported_ones(preset: str) -> None:
    model = preset_model(preset)
    wrong = EXPECTED_KBPS[preset][0] * 1.5
    with pytest.raises(BandwidthError) as info:
        model.n_q_for_bandwidth(wrong)
    message = str(info.value)
    assert f"{wrong:g} kbps" in message
    assert all(f"{kbps:g}" in message for kbps in EXPECTED_KBPS[preset])


def test_16khz_supported_bandwidths_message() -> None:
    with pytest.raises(BandwidthError, match=r"choose one of: 0\.5, 1, 1\.5, 2, 2\.5, 3, 3\.5, 4$"):
        preset_model("16khz").n_q_for_bandwidth(6.0)


# ----- causality -------------------------------------------------------------------------------
@pytest.mark.parametrize("m", [1, 37, 250], ids=lambda m: f"frame{m}")
def test_codec_is_prefix_causal(any_decoder_codec: Codec, speech: Speech, m: int) -> None:
    """Changing the input from sample ``m * hop`` on leaves earlier codes and output samples unchanged."""
    hop = any_decoder_codec.hop_length
    wav = speech(any_decoder_codec.sample_rate, index=0, seconds=0.25)
    changed = wav.clone()
    changed[..., m * hop :] = speech(any_decoder_codec.sample_rate, index=1, seconds=0.25)[..., m * hop :]
    codes, changed_codes = any_decoder_codec.encode(wav).codes, any_decoder_codec.encode(changed).codes
    assert torch.equal(changed_codes[..., :m], codes[..., :m])
    assert not torch.equal(changed_codes[..., m:], codes[..., m:])
    out, changed_out = any_decoder_codec.decode(codes), any_decoder_codec.decode(changed_codes)
    torch.testing.assert_close(changed_out[..., : m * hop], out[..., : m * hop], atol=1e-6, rtol=0)
    assert not torch.allclose(changed_out[..., m * hop :], out[..., m * hop :])


# ----- streaming -------------------------------------------------------------------------------
#: Chunk plans in frames; a plan repeats until the signal is used up.
PLANS = {"1-frame": [1], "4-frames": [4], "uneven-3-1-5": [3, 1, 5], "whole": [10_000]}


def stream_batch(speech: Speech, model: Codec, batch: int) -> torch.Tensor:
    """``batch`` real clips of 0.1 s (a whole number of frames): ``[batch, 1, T]``."""
    return torch.cat([speech(model.sample_rate, index=i, seconds=0.1) for i in range(batch)])


@pytest.mark.parametrize("batch", [1, 2], ids=lambda b: f"B{b}")
@pytest.mark.parametrize("plan", PLANS.values(), ids=PLANS.keys())
def test_streaming_encoder_equals_offline(fitted_codec: Codec, speech: Speech, plan: list[int], batch: int) -> None:
    wav = stream_batch(speech, fitted_codec, batch)
    parts = chunks(wav.shape[-1], plan, fitted_codec.hop_length)
    with torch.no_grad():
        latent = fitted_codec.encoder(wav)
        with fitted_codec.streaming(batch):
            streamed_latent = torch.cat([fitted_codec.encoder(wav[..., s]) for s in parts], dim=-1)
    codes = fitted_codec.encode(wav).codes
    with fitted_codec.streaming(batch):
        streamed_codes = torch.cat([fitted_codec.encode(wav[..., s]).codes for s in parts], dim=-1)
    assert streamed_latent.shape == latent.shape
    assert (streamed_latent - latent).abs().max() <= 1e-5
    assert torch.equal(streamed_codes, codes)


@pytest.mark.parametrize("batch", [1, 2], ids=lambda b: f"B{b}")
@pytest.mark.parametrize("plan", PLANS.values(), ids=PLANS.keys())
def test_streaming_decoder_equals_offline(any_decoder_codec: Codec, speech: Speech, plan: list[int], batch: int) -> None:
    codes = any_decoder_codec.encode(stream_batch(speech, any_decoder_codec, batch)).codes
    offline = any_decoder_codec.decode(codes)
    with any_decoder_codec.streaming(batch):
        streamed = torch.cat([any_decoder_codec.decode(codes[..., s]) for s in chunks(codes.shape[-1], plan, 1)], dim=-1)
    assert streamed.shape == offline.shape
    assert (streamed - offline).abs().max() <= drift_atol(any_decoder_codec, 1e-5)


def test_streaming_round_trip_chunk_by_chunk(any_decoder_codec: Codec, speech: Speech) -> None:
    """Encoding and decoding each chunk as it arrives gives the offline reconstruction."""
    wav = stream_batch(speech, any_decoder_codec, 1)
    offline = any_decoder_codec.decode(any_decoder_codec.encode(wav))
    with any_decoder_codec.streaming(1):
        assert any_decoder_codec.is_streaming
        pieces = [any_decoder_codec.decode(any_decoder_codec.encode(wav[..., s])) for s in chunks(wav.shape[-1], [3, 1, 5], 8)]
    assert not any_decoder_codec.is_streaming
    assert (torch.cat(pieces, dim=-1) - offline).abs().max() <= drift_atol(any_decoder_codec, 1e-5)


def test_streaming_state_keeps_only_the_context_not_the_chunk(any_decoder_codec: Codec, speech: Speech) -> None:
    """Between chunks each layer holds copies of its few samples of context, not views that keep a whole
    chunk's activations alive (memory would then grow with the chunk size)."""
    model = any_decoder_codec
    wav = speech(model.sample_rate, seconds=1.0)[..., : model.sample_rate // model.hop_length * model.hop_length]
    with model.streaming(1), torch.inference_mode():
        model.decode(model.encode(wav))
        held = [value for layer in streaming_modules(model) if layer._state is not None
                for value in vars(layer._state).values()]
        tensors = [t for v in held for t in (v if isinstance(v, (list, tuple)) else [v]) if isinstance(t, torch.Tensor)]
        assert tensors
        for t in tensors:
            assert t.untyped_storage().nbytes() <= max(t.numel() * t.element_size(), 64 << 10), tuple(t.shape)


def test_folded_weights_give_the_same_audio_and_cannot_be_saved(any_decoder_codec: Codec, speech: Speech,
                                                                  tmp_path: Path) -> None:
    model = any_decoder_codec
    wav = speech(model.sample_rate, seconds=0.5)
    codes = model.encode(wav)
    audio = model.decode(codes)
    folded = Codec(model.config)
    folded.load_state_dict(model.state_dict())
    folded.fold_for_inference().eval()
    assert not any(".parametrizations." in k for k in folded.state_dict())
    assert torch.equal(folded.encode(wav).codes, codes.codes)
    torch.testing.assert_close(folded.decode(codes), audio, atol=drift_atol(model, 1e-5), rtol=0)

    def streamed(codec: Codec) -> torch.Tensor:  # three frames per call: the time-major path with carried state
        with codec.streaming(1):
            return torch.cat([codec.decode(codes.codes[..., i:i + 3]) for i in range(0, codes.codes.shape[-1], 3)], -1)

    torch.testing.assert_close(streamed(folded), streamed(model), atol=drift_atol(model, 1e-5), rtol=0)
    for block in [m for m in folded.modules() if isinstance(m, ConvNeXtBlock)]:  # streams read the weights in place
        weights = block.init_state(wav)
        assert weights.up.is_contiguous() and weights.up.data_ptr() == block.mlp[0].weight.data_ptr()
        assert weights.down.data_ptr() == block.mlp[2].weight.data_ptr()
    with pytest.raises(CodecError, match="folded for inference"):
        folded.save_pretrained(tmp_path / "folded")
    assert not (tmp_path / "folded" / "model.safetensors").exists()


def test_streaming_rejects_a_wrong_batch_size(fitted_codec: Codec, speech: Speech) -> None:
    wav = stream_batch(speech, fitted_codec, 2)
    with fitted_codec.streaming(1):
        fitted_codec.encode(wav[:1, :, :16])
        with pytest.raises(InputError, match="batch size 1.*batch size 2"):
            fitted_codec.encode(wav[..., 16:32])
        with pytest.raises(InputError, match="batch size"):
            fitted_codec.decode(torch.zeros(2, 4, 3, dtype=torch.long))


@pytest.mark.parametrize("size", [1, 7, 9, 12], ids=lambda n: f"{n}-samples")
def test_streaming_rejects_a_chunk_that_is_not_whole_frames(fitted_codec: Codec, speech: Speech, size: int) -> None:
    wav = speech(fitted_codec.sample_rate, seconds=0.01)
    with fitted_codec.streaming(1), pytest.raises(InputError, match=f"multiple of {fitted_codec.hop_length}"):
        fitted_codec.encode(wav[..., :size])


def test_nested_streaming_raises(fitted_codec: Codec) -> None:
    with fitted_codec.streaming(1), pytest.raises(InputError, match="already active"), fitted_codec.streaming(1):
        pass
    assert not fitted_codec.is_streaming


# ----- padding invariance ----------------------------------------------------------------------
def padded_batch(speech: Speech, model: Codec) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Three real clips of lengths that are not whole frames, zero-padded into one batch.

    Returns:
        The clips (each ``[1, 1, T_i]``), the batch ``[3, 1, max T_i]`` and the lengths ``[3]``.
    """
    lengths = [2403, 1197, 4001]
    clips = [speech(model.sample_rate, index=i, seconds=0.3)[..., :n] for i, n in enumerate(lengths)]
    batch = torch.zeros(len(clips), 1, max(lengths))
    for i, clip in enumerate(clips):
        batch[i, :, : clip.shape[-1]] = clip[0]
    return clips, batch, torch.tensor(lengths)


def test_padded_batch_gives_the_codes_of_each_item_alone(any_decoder_codec: Codec, speech: Speech) -> None:
    clips, batch, lengths = padded_batch(speech, any_decoder_codec)
    encoded = any_decoder_codec.encode(batch, lengths=lengths)
    for i, clip in enumerate(clips):
        alone = any_decoder_codec.encode(clip)
        frames = alone.codes.shape[-1]
        assert int(encoded.frame_lengths[i]) == frames
        assert torch.equal(encoded.codes[i, :, :frames], alone.codes[0]), f"item {i} codes differ"


def test_garbage_in_the_padding_does_not_change_the_codes(fitted_codec: Codec, speech: Speech) -> None:
    _, batch, lengths = padded_batch(speech, fitted_codec)
    garbage = batch.clone()
    torch.manual_seed(4)
    for i, n in enumerate(lengths.tolist()):
        garbage[i, :, n:] = torch.randn_like(garbage[i, :, n:])
    clean_codes = fitted_codec.encode(batch, lengths=lengths).codes
    assert torch.equal(fitted_codec.encode(garbage, lengths=lengths).codes, clean_codes)


def test_padded_batch_decodes_each_item_to_its_length(any_decoder_codec: Codec, speech: Speech) -> None:
    clips, batch, lengths = padded_batch(speech, any_decoder_codec)
    decoded = any_decoder_codec.decode(any_decoder_codec.encode(batch, lengths=lengths))
    assert decoded.shape == batch.shape
    for i, clip in enumerate(clips):
        n = clip.shape[-1]
        alone = any_decoder_codec.decode(any_decoder_codec.encode(clip))
        torch.testing.assert_close(decoded[i, :, :n], alone[0], atol=drift_atol(any_decoder_codec, 1e-5), rtol=0)
        assert not decoded[i, :, n:].any(), "samples past an item's length must be zero"


def test_decode_unquantized_is_the_decoder_on_the_padded_latent(fitted_codec: Codec, speech: Speech) -> None:
    clips, batch, lengths = padded_batch(speech, fitted_codec)
    out = fitted_codec.decode_unquantized(batch, lengths=lengths)
    assert out.shape == batch.shape
    for i, clip in enumerate(clips):
        n = clip.shape[-1]
        padded = torch.nn.functional.pad(clip, (0, -n % fitted_codec.hop_length))  # [1, 1, F * hop]
        expected = fitted_codec.decoder(fitted_codec.encoder(padded))[..., :n].detach()  # [B, C, T] layers
        torch.testing.assert_close(out[i : i + 1, :, :n], expected, atol=1e-5, rtol=0)
        assert not out[i, :, n:].any(), "samples past an item's length must be zero"
    quantized = fitted_codec.decode(fitted_codec.encode(clips[0], bandwidth_kbps=fitted_codec.bandwidths_kbps[0]))
    assert not torch.allclose(fitted_codec.decode_unquantized(clips[0]), quantized, atol=1e-4)


# ----- errors ----------------------------------------------------------------------------------
def with_sample(value: float) -> Callable[[torch.Tensor], torch.Tensor]:
    def change(wav: torch.Tensor) -> torch.Tensor:
        wav = wav.clone()
        wav[0, 0, 5] = value
        return wav

    return change


ENCODE_ERRORS = {
    "rank-2": (lambda w: w[0], r"\[B, C, T\], got 2 dimensions.*wav\[None\]"),
    "rank-1": (lambda w: w[0, 0], r"\[B, C, T\], got 1 dimensions"),
    "rank-4": (lambda w: w[None], r"\[B, C, T\], got 4 dimensions"),
    "two-channels": (lambda w: w.repeat(1, 2, 1), r"takes 1 channel\(s\), got 2"),
    "no-samples": (lambda w: w[..., :0], r"empty"),
    "no-items": (lambda w: w[:0], r"empty"),
    "nan": (with_sample(float("nan")), r"NaN or Inf"),
    "inf": (with_sample(float("inf")), r"NaN or Inf"),
    "int16": (lambda w: (w * 32767).to(torch.int16), r"floating point.*int16"),
    "numpy": (lambda w: w.numpy(), r"torch\.Tensor.*ndarray"),
}


@pytest.mark.parametrize(("corrupt", "message"), ENCODE_ERRORS.values(), ids=ENCODE_ERRORS.keys())
def test_bad_audio_raises_input_error(
    fitted_codec: Codec, speech: Speech, corrupt: Callable[[torch.Tensor], object], message: str
) -> None:
    wav = speech(fitted_codec.sample_rate, seconds=0.01)
    with pytest.raises(InputError, match=message):
        fitted_codec.encode(corrupt(wav))


def test_sample_rate_mismatch_names_the_expected_rate(fitted_codec: Codec, speech: Speech) -> None:
    wav = speech(fitted_codec.sample_rate, seconds=0.01)
    with pytest.raises(SampleRateError, match=r"44100 Hz.*expects 16000 Hz.*resample"):
        fitted_codec.encode(wav, sample_rate=44100)
    assert fitted_codec.encode(wav, sample_rate=16000).codes.shape[-1] == 20


@pytest.mark.parametrize(
    "lengths",
    [[100, 100], [0], [-3], [161], [[100]]],
    ids=["two-for-one-item", "zero", "negative", "past-the-end", "wrong-rank"],
)
def test_bad_lengths_raise_input_error(fitted_codec: Codec, speech: Speech, lengths: list) -> None:
    wav = speech(fitted_codec.sample_rate, seconds=0.01)  # 160 samples
    with pytest.raises(InputError, match=r"lengths must hold one value in 1\.\.160"):
        fitted_codec.encode(wav, lengths=torch.tensor(lengths))


def test_unsupported_bandwidth_in_encode(fitted_codec: Codec, speech: Speech) -> None:
    with pytest.raises(BandwidthError, match="12, 24, 36, 48"):
        fitted_codec.encode(speech(fitted_codec.sample_rate, seconds=0.01), bandwidth_kbps=6.0)


CODE_ERRORS = {
    "rank-2": (lambda c: c[0], r"\[B, n_q, F\], got \(4, 5\)"),
    "rank-4": (lambda c: c[None], r"\[B, n_q, F\]"),
    "list": (lambda c: c.tolist(), r"\[B, n_q, F\], got list"),
    "float": (lambda c: c.float(), r"integers"),
    "too-large": (lambda c: c + 64, r"0\.\.63"),
    "negative": (lambda c: c - 64, r"0\.\.63"),
    "too-many-codebooks": (lambda c: torch.cat([c, c[:, :1]], dim=1), r"5 codebooks.*1 to 4"),
    "no-codebooks": (lambda c: c[:, :0], r"0 codebooks"),
}


@pytest.mark.parametrize(("corrupt", "message"), CODE_ERRORS.values(), ids=CODE_ERRORS.keys())
def test_bad_codes_raise_input_error(
    fitted_codec: Codec, corrupt: Callable[[torch.Tensor], object], message: str
) -> None:
    codes = torch.randint(0, 64, (1, 4, 5))
    with pytest.raises(InputError, match=message):
        fitted_codec.decode(corrupt(codes))
    with pytest.raises(InputError, match=message):
        fitted_codec.decode(EncodedAudio(corrupt(codes), torch.tensor([40]), torch.tensor([5])))


def test_every_error_is_a_codec_error() -> None:
    for error in (InputError, SampleRateError, BandwidthError, ModelNotFoundError):
        assert issubclass(error, CodecError)


@pytest.mark.parametrize("preset", ["tiny", "16khz"])
def test_inference_layout_gives_the_training_layouts_numbers(preset: str, speech: Speech) -> None:
    """Without autograd the SEANets run time-major; on real speech they match the autograd path."""
    torch.manual_seed(0)
    model = Codec(PRESETS[preset]()).eval()
    wav = speech(model.sample_rate, index=2, seconds=0.5)[..., : 3 * model.hop_length + 5]
    wav = torch.cat([wav, 0.5 * wav.flip(-1)])  # a batch of two
    with torch.no_grad():
        z = model.encoder(wav)
        y = model.decoder(z)
    z_ref = model.encoder(wav.clone().requires_grad_())
    y_ref = model.decoder(z.clone().requires_grad_())
    assert not z.requires_grad and z_ref.requires_grad and y_ref.requires_grad
    torch.testing.assert_close(z, z_ref.detach(), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(y, y_ref.detach(), atol=1e-5, rtol=1e-4)


# ----- training pass ---------------------------------------------------------------------------
def test_training_pass_reconstructs_and_trains_encoder_and_decoder(any_decoder_codec: Codec, speech: Speech) -> None:
    any_decoder_codec.train()
    wav = speech(any_decoder_codec.sample_rate, index=1, seconds=0.1)
    out = any_decoder_codec(wav)
    assert out.wav_hat.shape == wav.shape
    loss = torch.nn.functional.mse_loss(out.wav_hat, wav) + out.quantizer.commitment_loss
    loss.backward()
    for part in (any_decoder_codec.encoder, any_decoder_codec.decoder):
        grads = [p.grad for p in part.parameters() if p.requires_grad]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
        assert sum(float(g.abs().sum()) for g in grads) > 0


# ----- persistence -----------------------------------------------------------------------------
def test_save_and_load_round_trip(any_decoder_codec: Codec, speech: Speech, tmp_path: Path) -> None:
    any_decoder_codec.save_pretrained(tmp_path / "model")
    loaded = Codec.from_pretrained(tmp_path / "model")
    assert not loaded.training
    assert loaded.config == any_decoder_codec.config
    assert loaded.model_id == any_decoder_codec.model_id
    wav = speech(any_decoder_codec.sample_rate, index=2, seconds=0.2)
    encoded, loaded_encoded = any_decoder_codec.encode(wav), loaded.encode(wav)
    assert torch.equal(loaded_encoded.codes, encoded.codes)
    assert torch.equal(loaded.decode(loaded_encoded), any_decoder_codec.decode(encoded))


def test_half_precision_save_loads_as_float32_with_the_recorded_id(fitted_codec: Codec, speech: Speech,
                                                                  tmp_path: Path) -> None:
    fitted_codec.save_pretrained(tmp_path / "half", dtype=torch.float16)
    fitted_codec.save_pretrained(tmp_path / "full")
    half_bytes = (tmp_path / "half" / "model.safetensors").stat().st_size
    assert half_bytes < 0.6 * (tmp_path / "full" / "model.safetensors").stat().st_size
    loaded = Codec.from_pretrained(tmp_path / "half")
    meta = json.loads((tmp_path / "half" / "config.json").read_text())
    assert loaded.model_id == meta["model_id"] != fitted_codec.model_id
    assert all(t.dtype in (torch.float32, torch.int64, torch.bool) for t in loaded.state_dict().values())
    level = loaded.quantizer.levels[0]
    torch.testing.assert_close(level.embed_avg, level.embed * level.cluster_size[:, None])
    wav = speech(fitted_codec.sample_rate, index=2, seconds=0.5)
    agree = (loaded.encode(wav).codes == fitted_codec.encode(wav).codes).float().mean()
    assert agree > 0.9  # float16 rounding moves only near ties


def test_saved_directory_holds_only_json_and_safetensors(fitted_codec: Codec, tmp_path: Path) -> None:
    directory = tmp_path / "model"
    fitted_codec.save_pretrained(directory)
    fitted_codec.save_pretrained(directory)  # saving again over it leaves no temporary file
    assert sorted(os.listdir(directory)) == ["config.json", "model.safetensors"]
    meta = json.loads((directory / "config.json").read_text())
    assert meta["model_id"] == fitted_codec.model_id
    raw = (directory / "model.safetensors").read_bytes()
    header_size = int.from_bytes(raw[:8], "little")
    assert json.loads(raw[8 : 8 + header_size])["__metadata__"]["model_id"] == fitted_codec.model_id
    with safe_open(directory / "model.safetensors", framework="pt") as f:
        assert set(f.keys()) == set(fitted_codec.state_dict())
    for name in os.listdir(directory):
        head = (directory / name).read_bytes()[:2]
        assert head[:1] != b"\x80" and head != b"PK", f"{name} looks like a pickle or a torch.save archive"


def test_model_id_changes_with_a_weight_or_a_codebook(fitted_codec: Codec) -> None:
    original = fitted_codec.model_id
    assert len(original) == 16 and int(original, 16) >= 0
    assert fitted_codec.model_id == original
    weight = fitted_codec.decoder[0].conv.parametrizations.weight.original1
    old = weight[0, 0, 0].clone()
    with torch.no_grad():
        weight[0, 0, 0] += 1e-4
        assert fitted_codec.model_id != original
        weight[0, 0, 0] = old
        assert fitted_codec.model_id == original
        fitted_codec.quantizer.levels[3].embed[0, 0] += 1e-4
        assert fitted_codec.model_id != original


@pytest.mark.parametrize("make", ["missing", "empty-dir"])
def test_from_pretrained_on_a_missing_model(tmp_path: Path, make: str) -> None:
    path = tmp_path / "no-model"
    if make == "empty-dir":
        path.mkdir()
    with pytest.raises(ModelNotFoundError, match=r"no model at '.*no-model'.*config\.json"):
        Codec.from_pretrained(path)


# ----- malformed model folders ----------------------------------------------------------------------
def _edit_config(directory: Path, **fields: object) -> None:
    meta = json.loads((directory / "config.json").read_text())
    meta["config"].update(fields)
    (directory / "config.json").write_text(json.dumps(meta))


def _break_folder(directory: Path, case: str) -> None:
    """Damages a saved model folder as ``case`` says."""
    weights = directory / "model.safetensors"
    if case == "bad-json":
        (directory / "config.json").write_text("{")
    elif case == "empty-json":
        (directory / "config.json").write_text("{}")
    elif case == "no-weights":
        weights.unlink()
    elif case == "pickle":
        torch.save({"x": torch.zeros(3)}, weights)
    elif case == "cut-weights":
        weights.write_bytes(weights.read_bytes()[:-100])
    elif case == "missing-tensor":
        tensors = load_file(weights)
        del tensors["quantizer.levels.0.embed"]
        save_file(tensors, weights)
    elif case == "extra-tensor":
        save_file({**load_file(weights), "decoder.extra": torch.zeros(2)}, weights)
    elif case == "wrong-shape":
        _edit_config(directory, dimension=16)
    else:
        field, value = case.split("=")
        _edit_config(directory, **{field: json.loads(value)})


#: Each damaged folder and what its error names.
MALFORMED = {
    "bad-json": "cannot read it as JSON", "empty-json": 'a "config" mapping', "no-weights": "does not exist",
    "pickle": "not a readable safetensors file", "cut-weights": "not a readable safetensors file",
    "missing-tensor": "lacks tensor 'quantizer.levels.0.embed'", "extra-tensor": "has tensor 'decoder.extra'",
    "wrong-shape": "has shape", "kernel_size=0": "kernel_size must be in [1, 64], got 0",
    "n_q=300": "n_q must be in [1, 64]", "codebook_size=1000000000": "codebook_size must be in [2, 65536]",
    "dimension=1000000": "dimension must be in [1, 4096]", "sample_rate=1000000000": "sample_rate must be in",
    "epsilon=NaN": "epsilon must be in (0, 1], got nan", "dilation_base=-2": "dilation_base must be in [1, 16]",
    "ratios=[64,64,64]": "hop of 262144 samples",
    "ratios=[]": "ratios must hold 1 to 8", "codebook_size=1024.5": "expected int",
}


@pytest.mark.parametrize("case", MALFORMED, ids=MALFORMED)
def test_malformed_model_folders_raise_codec_errors_naming_the_file(
    case: str, fitted_codec: Codec, tmp_path: Path
) -> None:
    fitted_codec.save_pretrained(tmp_path / "model")
    _break_folder(tmp_path / "model", case)
    with pytest.raises(CodecError, match=re.escape(MALFORMED[case])) as raised:
        Codec.from_pretrained(tmp_path / "model")
    assert str(tmp_path / "model") in str(raised.value)


def test_a_malformed_model_folder_exits_2_with_one_line(
    fitted_codec: Codec, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fitted_codec.save_pretrained(tmp_path / "model")
    _break_folder(tmp_path / "model", "pickle")
    clip = min((Path(__file__).parent / "data").glob("*.wav"))
    assert main(["compress", str(clip), str(tmp_path / "x.rvq"), "--model", str(tmp_path / "model")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("codec compress: error: ") and "safetensors" in err


def test_weights_are_checked_before_the_model_is_built(
    fitted_codec: Codec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fitted_codec.save_pretrained(tmp_path / "model")
    _edit_config(tmp_path / "model", n_q=64, codebook_size=65536, dimension=16)  # 268 MB of codebooks
    built, real_init = [], Codec.__init__

    def recording_init(self: Codec, config: object) -> None:
        built.append(str(torch.empty(0).device))  # where the model's tensors go
        real_init(self, config)

    monkeypatch.setattr(Codec, "__init__", recording_init)
    with pytest.raises(ModelFileError, match="lacks tensor"):
        Codec.from_pretrained(tmp_path / "model")
    assert built == []  # the codebooks were checked against the file's header before anything was built


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(sorted(CODEC_BOUNDS)), value=st.one_of(
    st.integers(-(2**40), 2**40), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.text(max_size=3),
    st.none()))
def test_fuzzed_config_fields_load_or_raise_codec_errors(
    fitted_codec: Codec, tmp_path: Path, field: str, value: object
) -> None:
    directory = tmp_path / "fuzzed"
    if not directory.exists():
        fitted_codec.save_pretrained(directory)
    saved = (directory / "config.json").read_text()
    try:
        _edit_config(directory, **{field: value})
        try:
            Codec.from_pretrained(directory)
        except CodecError:
            pass
    finally:
        (directory / "config.json").write_text(saved)
