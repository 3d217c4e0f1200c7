"""The codec: SEANet encoder, residual vector quantizer, SEANet or inverse-STFT decoder.

    wav [B, C, T] --encoder--> z [B, D, F] --RVQ--> codes [B, n_q, F]
    codes --RVQ decode--> z_hat [B, D, F] --decoder--> wav_hat [B, C, F * hop]

``F = ceil(T / hop)``: the input is zero-padded on the right to whole frames
and the decoded signal is cropped back to ``T``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn
from torch.nn.utils import parametrize

from codec import bitrate
from codec.atomic import atomic_write, write_json
from codec.errors import (
    BandwidthError,
    CodecError,
    ConfigError,
    InputError,
    ModelFileError,
    ModelNotFoundError,
    SampleRateError,
)
from codec.network import streaming as streaming_lib
from codec.network.config import CodecConfig, from_dict, to_dict
from codec.network.istft_decoder import ISTFTDecoder
from codec.network.quantization import QuantizerOutput, ResidualVectorQuantizer
from codec.network.seanet import SEANetDecoder, SEANetEncoder

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PRETRAINED_DIR = Path(__file__).parents[1] / "pretrained"


@dataclass
class EncodedAudio:
    """Codes of a batch of signals and what is needed to decode them.

    Attributes:
        codes: Integer codes ``[B, n_q, F]``.
        lengths: Samples of each original signal ``[B]``; decoding crops to them.
        frame_lengths: Valid frames of each item ``[B]`` (``ceil(length / hop)``).
    """

    codes: Tensor
    lengths: Tensor
    frame_lengths: Tensor

    @property
    def n_q(self) -> int:
        """Codebooks used."""
        return self.codes.shape[1]


@dataclass
class CodecOutput:
    """Training forward output: ``wav_hat`` [B, C, T], the quantizer's output, when the decoder
    recovers its phase its predicted log-magnitudes ``[B, S, K]`` (every gradient to the generator
    passes through them), and when it adds harmonics its predicted pitch ``[B, F, P + 1]``
    (pitch-bin logits and a voicing logit, :meth:`ISTFTDecoder.pitch`)."""

    wav_hat: Tensor
    quantizer: QuantizerOutput
    log_magnitude: Tensor | None = None
    pitch: Tensor | None = None


class Codec(nn.Module):
    """A streamable neural audio codec.

    Args:
        config: Architecture and quantizer settings.
    """

    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = SEANetEncoder(config)
        self.quantizer = ResidualVectorQuantizer(config)
        self.decoder = ISTFTDecoder(config) if config.decoder == "istft" else SEANetDecoder(config)

    # ----- properties -------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        """Sample rate in Hz."""
        return self.config.sample_rate

    @property
    def hop_length(self) -> int:
        """Samples per frame."""
        return self.config.hop_length

    @property
    def frame_rate_hz(self) -> float:
        """Frames per second."""
        return self.config.frame_rate_hz

    @property
    def bandwidths_kbps(self) -> tuple[float, ...]:
        """Supported nominal bitrates, one per codebook count ``1..n_q``."""
        return self.config.bandwidths_kbps

    @property
    def model_id(self) -> str:
        """First 16 hex digits of a SHA-256 over the config and every weight and buffer used for inference."""
        return _weights_id(self.config, self.state_dict())

    def n_q_for_bandwidth(self, bandwidth_kbps: float | None) -> int:
        """Codebooks needed for ``bandwidth_kbps`` (all of them for ``None``).

        Raises:
            BandwidthError: If the bandwidth is not one of :attr:`bandwidths_kbps`.
        """
        if bandwidth_kbps is None:
            return self.config.n_q
        n_q = bitrate.codebooks_for_kbps(self.bandwidths_kbps, bandwidth_kbps)
        if n_q is not None:
            return n_q
        supported = ", ".join(f"{b:g}" for b in self.bandwidths_kbps)
        raise BandwidthError(f"bandwidth {bandwidth_kbps:g} kbps is not supported; choose one of: {supported}")

    # ----- streaming --------------------------------------------------------------------------
    @contextlib.contextmanager
    def streaming(self, batch_size: int = 1) -> Iterator[None]:
        """Keeps the state of every causal layer between calls (see :mod:`codec.network.streaming`).

        Inside the context, :meth:`encode` takes chunks of a multiple of
        :attr:`hop_length` samples and :meth:`decode` returns every sample of
        the frames it is given; the concatenated outputs equal offline ones.
        """
        # Weight norm recomputes each weight on every call; one-frame chunks would pay that per frame.
        with streaming_lib.streaming(self, batch_size), parametrize.cached():
            yield

    @property
    def is_streaming(self) -> bool:
        """Whether a :meth:`streaming` context is active."""
        return self.encoder[0].is_streaming

    # ----- encode / decode --------------------------------------------------------------------
    def _check_wav(self, wav: Tensor, sample_rate: int | None) -> None:
        if not isinstance(wav, Tensor):
            raise InputError(f"expected a torch.Tensor of audio, got {type(wav).__name__}")
        if wav.dim() != 3:
            hint = " (add a batch axis with wav[None])" if wav.dim() == 2 else ""
            raise InputError(f"expected audio shaped [B, C, T], got {wav.dim()} dimensions {tuple(wav.shape)}{hint}")
        if wav.shape[1] != self.config.channels:
            raise InputError(
                f"the model takes {self.config.channels} channel(s), got {wav.shape[1]}; "
                "mix down or encode each channel as its own batch item"
            )
        if wav.shape[-1] == 0 or wav.shape[0] == 0:
            raise InputError(f"audio is empty (shape {tuple(wav.shape)})")
        if not wav.is_floating_point():
            raise InputError(f"audio must be floating point in [-1, 1], got {wav.dtype}")
        if not torch.isfinite(wav).all():
            raise InputError("audio contains NaN or Inf samples; clean or clip it before encoding")
        if sample_rate is not None and sample_rate != self.sample_rate:
            raise SampleRateError(
                f"audio is at {sample_rate} Hz but the model expects {self.sample_rate} Hz; "
                "resample first (codec.audio.resample or codec.audio.load(path, target_rate))"
            )

    def _lengths(self, wav: Tensor, lengths: Tensor | None) -> Tensor:
        total = wav.shape[-1]
        if lengths is None:
            return torch.full((wav.shape[0],), total, dtype=torch.long, device=wav.device)
        lengths = torch.as_tensor(lengths, dtype=torch.long, device=wav.device)
        if lengths.shape != (wav.shape[0],) or (lengths < 1).any() or (lengths > total).any():
            raise InputError(f"lengths must hold one value in 1..{total} per batch item, got {lengths.tolist()}")
        return lengths

    def _pad(self, wav: Tensor, lengths: Tensor | None) -> Tensor:
        """Zeroes samples past each length (if given) and right-pads to whole frames: [B, C, F * hop]."""
        if lengths is not None:
            mask = torch.arange(wav.shape[-1], device=wav.device) < lengths[:, None]  # [B, T]
            wav = wav * mask[:, None, :]
        pad = -wav.shape[-1] % self.hop_length
        return nn.functional.pad(wav, (0, pad)) if pad else wav

    @torch.no_grad()
    def encode(
        self,
        wav: Tensor,
        bandwidth_kbps: float | None = None,
        lengths: Tensor | None = None,
        sample_rate: int | None = None,
    ) -> EncodedAudio:
        """Encodes audio to codes.

        Args:
            wav: Audio ``[B, C, T]`` at :attr:`sample_rate`, floats in [-1, 1].
            bandwidth_kbps: Target bitrate, one of :attr:`bandwidths_kbps`
                (default: all codebooks).
            lengths: Valid samples of each item ``[B]`` for a padded batch. The
                codes of each item equal those of encoding it alone.
            sample_rate: If given, checked against the model's rate.

        Returns:
            :class:`EncodedAudio` with codes ``[B, n_q, ceil(T / hop)]``.

        Raises:
            InputError: Wrong rank, channels, dtype, empty or non-finite audio,
                or (when streaming) a chunk that is not whole frames.
            SampleRateError: ``sample_rate`` differs from the model's.
            BandwidthError: Unsupported ``bandwidth_kbps``.
        """
        self._check_wav(wav, sample_rate)
        n_q = self.n_q_for_bandwidth(bandwidth_kbps)
        if self.is_streaming and wav.shape[-1] % self.hop_length:
            raise InputError(
                f"streaming chunks must be a multiple of {self.hop_length} samples, got {wav.shape[-1]}"
            )
        given = None if lengths is None else self._lengths(wav, lengths)  # without, nothing to zero
        z = self.encoder(self._pad(wav, given))  # [B, D, F]
        lengths = self._lengths(wav, given)
        codes = self.quantizer.encode(z, n_q)  # [B, n_q, F]
        frame_lengths = (lengths + self.hop_length - 1) // self.hop_length
        return EncodedAudio(codes=codes, lengths=lengths, frame_lengths=frame_lengths)

    @torch.no_grad()
    def decode(self, encoded: EncodedAudio | Tensor) -> Tensor:
        """Decodes codes back to audio.

        Args:
            encoded: :class:`EncodedAudio` (output cropped to its lengths) or a
                code tensor ``[B, n, F]`` with ``n <= n_q`` (output ``F * hop``).

        Returns:
            Audio ``[B, C, T]``.

        Raises:
            InputError: Codes of the wrong rank, range or codebook count.
        """
        codes = encoded.codes if isinstance(encoded, EncodedAudio) else encoded
        self._check_codes(codes)
        wav = self.decoder(self.quantizer.decode(codes))  # [B, C, F * hop]
        if isinstance(encoded, EncodedAudio) and not self.is_streaming:
            wav = wav[..., : int(encoded.lengths.max())]
            mask = torch.arange(wav.shape[-1], device=wav.device) < encoded.lengths[:, None]
            wav = wav * mask[:, None, :]
        return wav

    @torch.no_grad()
    def decode_unquantized(self, wav: Tensor, lengths: Tensor | None = None) -> Tensor:
        """The decoder fed the encoder's output without quantization: the ceiling the quantizer can reach.

        Padding and cropping are those of :meth:`encode` then :meth:`decode`:
        ``wav`` is zero-padded to whole frames, and the output is cropped back
        to ``T`` (and zeroed past each item's length).

        Args:
            wav: Audio ``[B, C, T]`` at :attr:`sample_rate`.
            lengths: Valid samples of each item ``[B]`` for a padded batch.

        Returns:
            Audio ``[B, C, T]``.

        Raises:
            InputError: As :meth:`encode`.
        """
        self._check_wav(wav, None)
        lengths = self._lengths(wav, lengths)
        z = self.encoder(self._pad(wav, lengths))  # [B, D, F]
        out = self.decoder(z)[..., : wav.shape[-1]]  # [B, C, T]
        mask = torch.arange(out.shape[-1], device=out.device) < lengths[:, None]  # [B, T]
        return out * mask[:, None, :]

    def _check_codes(self, codes: Tensor) -> None:
        if not isinstance(codes, Tensor) or codes.dim() != 3:
            shape = tuple(codes.shape) if isinstance(codes, Tensor) else type(codes).__name__
            raise InputError(f"expected codes shaped [B, n_q, F], got {shape}")
        if codes.is_floating_point():
            raise InputError(f"codes must be integers, got {codes.dtype}")
        if not 1 <= codes.shape[1] <= self.config.n_q:
            raise InputError(f"codes have {codes.shape[1]} codebooks; the model has 1 to {self.config.n_q}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.config.codebook_size):
            raise InputError(f"codes must lie in 0..{self.config.codebook_size - 1}")

    def forward(self, wav: Tensor, n_q: int | None = None, f0: Tensor | None = None) -> CodecOutput:
        """Training pass: reconstructs ``wav`` [B, C, T] (T a multiple of the hop) with gradients.

        In training mode the quantizer updates its codebooks and applies
        quantizer dropout. ``f0`` [B, F] (Hz, 0 = unvoiced), for a decoder
        with harmonics, drives them instead of the decoder's own prediction.
        """
        z = self.encoder(wav)  # [B, D, F]
        q = self.quantizer(z, n_q)
        if isinstance(self.decoder, ISTFTDecoder) and self.decoder.recovers_phase:
            log_magnitude = self.decoder.head_output(q.quantized)  # [B, S, K]
            return CodecOutput(wav_hat=self.decoder.render(log_magnitude), quantizer=q, log_magnitude=log_magnitude)
        if isinstance(self.decoder, ISTFTDecoder) and self.decoder.excitation is not None:
            head = self.decoder.head_output(q.quantized)  # [B, F, 3K + P + 1]
            return CodecOutput(wav_hat=self.decoder.render(head, f0), quantizer=q, pitch=self.decoder.pitch(head))
        return CodecOutput(wav_hat=self.decoder(q.quantized), quantizer=q)

    def fold_for_inference(self) -> Codec:
        """Folds the weights for inference, in place; returns ``self``.

        Each weight-normed weight becomes the plain weight it stands for, and
        each ConvNeXt block of the iSTFT decoder folds its layer scale into its
        MLP, stored in the layout its one-row products read
        (:meth:`~codec.network.istft_decoder.ConvNeXtBlock.fold_for_inference`).
        The outputs stay the same (to float rounding), the weights are no
        longer recomputed on each call nor copied per stream, but the state
        dict changes: :meth:`save_pretrained` and ``load_state_dict`` refuse the
        folded model, and its :attr:`model_id` is no longer that of its files
        (take the id before folding, as :class:`~codec.resolve.LoadedModel` does).
        """
        for module in [m for m in self.modules() if parametrize.is_parametrized(m)]:
            for name in list(module.parametrizations):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
        for module in self.modules():
            if hasattr(module, "fold_for_inference") and module is not self:
                module.fold_for_inference()
        self._folded = True
        return self

    @property
    def is_folded(self) -> bool:
        """Whether :meth:`fold_for_inference` has run (models loaded for coding are folded)."""
        return getattr(self, "_folded", False)

    # ----- persistence ------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, dtype: torch.dtype | None = None) -> None:
        """Writes ``config.json`` and ``model.safetensors`` to ``directory``, each atomically.

        Args:
            directory: Created if missing.
            dtype: Store floating tensors in this type (e.g. ``torch.float16``
                to halve a bundled model) and leave out the training-only
                codebook sums; :meth:`from_pretrained` restores float32. The
                recorded ``model_id`` is that of the model as it will load.
        """
        if self.is_folded:
            raise CodecError("cannot save a model whose weights were folded for inference (fold_for_inference): "
                             "save the model as loaded")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        if dtype is not None:
            tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()
                       if not k.endswith(TRAINING_ONLY_SUFFIX)}
        loaded = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
        meta = {"config": to_dict(self.config), "model_id": _weights_id(self.config, loaded), "format": 1}
        atomic_write(directory / WEIGHTS_FILE, lambda p: save_file(tensors, p, metadata={"model_id": meta["model_id"]}))
        write_json(directory / CONFIG_FILE, meta)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, map_location: str = "cpu") -> Codec:
        """Loads a model saved by :meth:`save_pretrained`.

        Args:
            name_or_path: A directory, or the name of a model bundled with the
                package (see :func:`pretrained_names`).
            map_location: Device for the weights.

        Raises:
            ModelNotFoundError: If neither a directory nor a bundled name matches.
            ConfigError: If ``config.json`` is malformed or a setting out of range.
            ModelFileError: If the weights are missing, unreadable or do not fit the config.
        """
        path = _model_directory(name_or_path)
        config = read_config(path / CONFIG_FILE)
        # The codebooks, which the config can make large, are checked against the file before anything is
        # built; the rest after one build on the CPU. (A shapes-only build on the meta device would run its
        # initialisers through torch's decompositions, which import sympy: 2 s and 165 MB on every load.)
        _read_weights(path / WEIGHTS_FILE, _codebook_shapes(config), map_location, header_only=True)
        model = cls(config)
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        model.load_state_dict(_read_weights(path / WEIGHTS_FILE, expected, map_location))
        return model.to(map_location).eval()


def _model_directory(name_or_path: str | Path) -> Path:
    """The directory of a model given by path or bundled name.

    Raises:
        ModelNotFoundError: If neither a directory nor a bundled name matches.
    """
    path = Path(name_or_path)
    if (path / CONFIG_FILE).is_file():
        return path
    bundled = PRETRAINED_DIR / str(name_or_path)
    if (bundled / CONFIG_FILE).is_file():
        return bundled
    names = ", ".join(pretrained_names()) or "none"
    raise ModelNotFoundError(
        f"no model at {str(name_or_path)!r}: not a directory with {CONFIG_FILE} and not a "
        f"bundled model (bundled: {names})"
    )


def read_config(path: Path) -> CodecConfig:
    """The :class:`CodecConfig` in a model's ``config.json`` (every field range-checked).

    Raises:
        ConfigError: Naming the file, if it is not JSON, has no ``config`` mapping,
            or a field is unknown, mistyped or out of range.
    """
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: cannot read it as JSON: {e}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise ConfigError(f'{path}: expected a JSON object with a "config" mapping (as save_pretrained writes)')
    try:
        return from_dict(CodecConfig, meta["config"])
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def _codebook_shapes(config: CodecConfig) -> dict[str, tuple[int, ...]]:
    """The shapes of the codebooks of a model of ``config``, without building it."""
    return {f"quantizer.levels.{i}.embed": (config.codebook_size, config.dimension) for i in range(config.n_q)}


def _read_weights(
    path: Path, expected: dict[str, tuple[int, ...]], device: str, header_only: bool = False
) -> dict[str, Tensor]:
    """Reads the tensors of ``path`` after checking their names and shapes against ``expected``.

    With ``header_only``, only checks that the file holds every tensor of
    ``expected`` with its shape (others may exist too), and reads nothing.

    Floating tensors come back as stored (a float16 file stays float16 here:
    ``load_state_dict`` casts while copying, so no float32 copy of the whole
    file is made); the training-only codebook sums left out of a compact file
    are rebuilt from the codebooks, in float32.

    Raises:
        ModelFileError: Naming the file and the tensor, if the file is missing or
            not safetensors, or a tensor is missing, unexpected or of another shape.
    """
    if not path.is_file():
        raise ModelFileError(f"{path} does not exist; a model directory holds {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (not a dict)
            if header_only:
                _check_shapes(path, {k: v for k, v in shapes.items() if k in expected}, expected)
                return {}
            _check_shapes(path, shapes, expected)
            tensors = {k: f.get_tensor(k) for k in shapes}
    except SafetensorError as e:
        raise ModelFileError(f"{path} is not a readable safetensors file ({e}); save models with save_pretrained") from None
    tensors = {k: v.to(device) for k, v in tensors.items()}
    for key in [k for k in expected if k.endswith(TRAINING_ONLY_SUFFIX) and k not in tensors]:
        prefix = key[: -len(TRAINING_ONLY_SUFFIX)]  # derivable: EMA sums = vectors x usage
        tensors[key] = tensors[prefix + ".embed"].float() * tensors[prefix + ".cluster_size"].float()[:, None]
    return tensors


def _check_shapes(path: Path, shapes: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]]) -> None:
    """Raises :class:`ModelFileError` unless ``shapes`` has every tensor of ``expected`` (training-only optional)."""
    missing = sorted(k for k in expected if k not in shapes and not k.endswith(TRAINING_ONLY_SUFFIX))
    if missing:
        raise ModelFileError(f"{path} lacks tensor {missing[0]!r} (and {len(missing) - 1} more) that its config needs")
    unexpected = sorted(set(shapes) - set(expected))
    if unexpected:
        raise ModelFileError(f"{path} has tensor {unexpected[0]!r}, which a model of its config does not have")
    for key, shape in shapes.items():
        if shape != expected[key]:
            raise ModelFileError(
                f"{path}: tensor {key!r} has shape {list(shape)} where its config needs {list(expected[key])}"
            )


#: State-dict entries that only training reads (the EMA sums of the codebooks).
TRAINING_ONLY_SUFFIX = ".embed_avg"


#: Config fields added after models were published, with the value every earlier model has: at that value a
#: field stays out of :func:`_weights_id`, so earlier models (and the files they wrote) keep their ids.
LATER_FIELDS = {"decoder_harmonics": False}


def _weights_id(config: CodecConfig, tensors: dict[str, Tensor]) -> str:
    """First 16 hex digits of a SHA-256 over the config and the inference tensors."""
    fields = {k: v for k, v in to_dict(config).items() if k not in LATER_FIELDS or v != LATER_FIELDS[k]}
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode())
    for name, tensor in sorted(tensors.items()):
        if name.endswith(TRAINING_ONLY_SUFFIX):
            continue
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def pretrained_names() -> list[str]:
    """Names of the models shipped inside the package."""
    if not PRETRAINED_DIR.is_dir():
        return []
    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / CONFIG_FILE).is_file())

