"""Frozen dataclass configs and their strict loading from dicts and YAML files.

A config file is a small YAML mapping whose keys are the dataclass fields.
Loading is strict: an unknown key or a value of the wrong type raises
:class:`~codec.errors.ConfigError` naming the key, so a typo never silently
falls back to a default.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from codec import bitrate
from codec.errors import ConfigError

T = TypeVar("T")


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader, but ``1e-3`` is a float (YAML 1.2) rather than a string (YAML 1.1)."""


_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


@dataclasses.dataclass(frozen=True)
class _Bound:
    """Inclusive range of a numeric config field; ``open_low``/``open_high`` exclude an end."""

    kind: type
    low: float
    high: float
    open_low: bool = False
    open_high: bool = False

    def holds(self, value: float) -> bool:
        above = value > self.low if self.open_low else value >= self.low
        below = value < self.high if self.open_high else value <= self.high
        return above and below

    def describe(self) -> str:
        return f"{'(' if self.open_low else '['}{self.low:g}, {self.high:g}{')' if self.open_high else ']'}"


#: Range of every numeric :class:`CodecConfig` field, checked before a model is built. The ends are
#: far beyond published codecs (EnCodec: 24/48 kHz, 32 filters, dimension 128, kernels 7/7/3, n_q 32
#: of 1024; DAC: 44.1 kHz, 64 filters, latent 1024, ratios (8, 8, 4, 2), 9 of 1024; Mimi: n_q 32 of
#: 2048, dimension 512) yet small enough that a damaged config cannot ask for gigabytes. New fields
#: add a row here.
CODEC_BOUNDS: dict[str, _Bound] = {
    "sample_rate": _Bound(int, 1, 384_000),  # the highest rate of audio interfaces (DXD)
    "channels": _Bound(int, 1, 8),  # as many as the file format holds (codec.fileformat.bitstream.MAX_CHANNELS)
    "n_filters": _Bound(int, 1, 1024),
    "dimension": _Bound(int, 1, 4096),
    "kernel_size": _Bound(int, 1, 64),
    "last_kernel_size": _Bound(int, 1, 64),
    "residual_kernel_size": _Bound(int, 1, 64),
    "n_residual_layers": _Bound(int, 1, 16),
    "dilation_base": _Bound(int, 1, 16),
    "compress": _Bound(int, 1, 64),
    "lstm_layers": _Bound(int, 0, 8),
    "n_q": _Bound(int, 1, 64),
    "codebook_size": _Bound(int, 2, 65_536),  # codes are stored in 16 bits (docs/format.md)
    "ema_decay": _Bound(float, 0.0, 1.0, open_low=True, open_high=True),
    "epsilon": _Bound(float, 0.0, 1.0, open_low=True),
    "kmeans_iters": _Bound(int, 0, 1000),
    "dead_code_ratio": _Bound(float, 0.0, 1.0),
    "quantizer_bypass": _Bound(float, 0.0, 1.0),
    "decoder_dim": _Bound(int, 1, 4096),  # Vocos: 512 (24 kHz), 768 (its EnCodec-token model)
    "decoder_layers": _Bound(int, 1, 64),  # Vocos: 8 and 12
    "n_fft": _Bound(int, 1, 16_384),  # Vocos: 1024 and 1280; 4 x the largest hop
    "decoder_subframes": _Bound(int, 1, 16),
}
#: Strides and their product (DAC 44.1 kHz: 4 strides, hop 512; Mimi: hop 1920 with its extra downsampling).
MAX_RATIOS, MAX_RATIO, MAX_HOP_LENGTH = 8, 64, 4096
#: Channels of the widest convolution, ``n_filters * 2 ** len(ratios)`` (EnCodec 512, DAC 1024).
MAX_CHANNELS_WIDEST = 4096
#: Values in all codebooks, ``n_q * codebook_size * dimension`` (Mimi: 32 x 2048 x 256 = 16.8 M).
MAX_CODEBOOK_VALUES = 1 << 26


def _check_value(key: str, value: Any, bound: _Bound) -> None:
    """Raises :class:`ConfigError` unless ``value`` is a finite number of ``bound.kind`` within ``bound``."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or (bound.kind is int and not isinstance(value, int)):
        raise ConfigError(f"{key} must be {'an integer' if bound.kind is int else 'a number'}, got {value!r}")
    if not math.isfinite(value) or not bound.holds(value):
        raise ConfigError(f"{key} must be in {bound.describe()}, got {value!r}")


def check_bounds(config: Any, bounds: dict[str, _Bound]) -> None:
    """Checks the fields of ``config`` named in ``bounds``.

    Raises:
        ConfigError: Naming the first field out of range or of the wrong type.
    """
    for key, bound in bounds.items():
        _check_value(key, getattr(config, key), bound)


@dataclasses.dataclass(frozen=True)
class CodecConfig:
    """Architecture and quantizer settings of a :class:`~codec.network.model.Codec`.

    Attributes:
        name: Human-readable model name, recorded in compressed files.
        sample_rate: Audio sample rate in Hz.
        channels: Audio channels the network takes (1 for speech models).
        n_filters: Channels of the first convolution; doubled at each stride.
        dimension: Latent dimension seen by the quantizer.
        ratios: Decoder upsampling ratios; the encoder uses them reversed.
            Their product is the hop length in samples.
        kernel_size: Kernel of the first and of the intermediate convolutions.
        last_kernel_size: Kernel of the last convolution.
        residual_kernel_size: Kernel of the dilated convolution in residual blocks.
        n_residual_layers: Residual blocks per stride.
        dilation_base: Dilation grows as ``dilation_base ** j`` within a stride.
        compress: Residual blocks narrow their hidden channels by this factor.
        lstm_layers: LSTM layers at the bottleneck (0 removes the LSTM).
        decoder: ``"seanet"`` (transposed convolutions up to the sample rate,
            EnCodec's) or ``"istft"`` (a frame-rate ConvNeXt backbone predicting
            each frame's spectrum, then an inverse STFT; see
            :mod:`codec.network.istft_decoder`).
        decoder_dim: Width of the ``"istft"`` decoder's backbone.
        decoder_layers: ConvNeXt blocks of the ``"istft"`` decoder.
        n_fft: Frame length of the ``"istft"`` decoder's inverse STFT, a
            multiple of the hop length (``2 * hop``: 40 ms windows at 16 kHz).
        decoder_phase: What the ``"istft"`` decoder's head predicts of each
            bin's phase: ``"absolute"`` (the phase itself, as Vocos) or
            ``"integrated"`` (its advance over the previous frame, beyond the
            bin's nominal advance; the phases are the running sum, GANSynth's
            instantaneous frequency, so a steady harmonic keeps a coherent
            phase from frame to frame) or ``"recovered"`` (nothing: the head
            predicts the log-magnitudes of Hann-windowed frames and the phases
            follow from their gradients, :mod:`codec.network.phase_recovery`;
            needs ``n_fft`` at least 4 of those frames' hops).
        decoder_subframes: Frames the ``"istft"`` decoder predicts per code
            frame, at a hop of ``hop_length / decoder_subframes`` (phase
            recovery wants frames overlapping by 3/4 or more).
        decoder_harmonics: Whether the ``"istft"`` decoder also predicts each
            frame's fundamental and adds exact harmonics of it, shaped by a
            predicted per-bin gain, to its spectrum
            (:mod:`codec.network.harmonic_source`); trained with
            ``loss.pitch``. Needs ``decoder_phase`` ``"absolute"`` or
            ``"integrated"`` and one predicted frame per code frame.
        n_q: Number of residual quantizer levels (codebooks).
        codebook_size: Entries per codebook.
        ema_decay: Decay of the codebook exponential moving averages
            (EnCodec: 0.99).
        epsilon: Laplace smoothing of the EMA cluster sizes (EnCodec: 1e-5).
        kmeans_iters: K-means iterations of the first-batch initialisation
            (EnCodec: 50).
        dead_code_ratio: A code whose EMA usage falls below this fraction of the
            mean usage is restarted from a current encoder output (Mimi: 0.1).
        quantizer_dropout: In training, each batch item uses a random number of
            codebooks so that one model serves every bandwidth.
        quantizer_bypass: In training, the probability that a batch item skips
            quantization and the decoder sees the encoder output itself (Mimi:
            0.5). It keeps the latent informative while the codebooks catch up.
    """

    name: str = "rvq-codec"
    sample_rate: int = 16000
    channels: int = 1
    n_filters: int = 32
    dimension: int = 128
    ratios: tuple[int, ...] = (8, 5, 4, 2)
    kernel_size: int = 7
    last_kernel_size: int = 7
    residual_kernel_size: int = 3
    n_residual_layers: int = 1
    dilation_base: int = 2
    compress: int = 2
    lstm_layers: int = 2
    decoder: str = "seanet"
    decoder_dim: int = 384
    decoder_layers: int = 8
    n_fft: int = 640
    decoder_phase: str = "absolute"
    decoder_subframes: int = 1
    decoder_harmonics: bool = False
    n_q: int = 8
    codebook_size: int = 1024
    ema_decay: float = 0.99
    epsilon: float = 1e-5
    kmeans_iters: int = 50
    dead_code_ratio: float = 0.1
    quantizer_dropout: bool = True
    quantizer_bypass: float = 0.0

    def __post_init__(self) -> None:
        """Checks every field against :data:`CODEC_BOUNDS` and the combined size limits.

        Raises:
            ConfigError: Naming the first field out of range (before any tensor is allocated).
        """
        check_bounds(self, CODEC_BOUNDS)
        if not 1 <= len(self.ratios) <= MAX_RATIOS:
            raise ConfigError(f"ratios must hold 1 to {MAX_RATIOS} strides, got {list(self.ratios)}")
        for ratio in self.ratios:
            _check_value("ratios", ratio, _Bound(int, 1, MAX_RATIO))
        if self.hop_length > MAX_HOP_LENGTH:
            raise ConfigError(f"ratios {list(self.ratios)} give a hop of {self.hop_length} samples; at most {MAX_HOP_LENGTH}")
        widest = self.n_filters * 2 ** len(self.ratios)
        if widest > MAX_CHANNELS_WIDEST:
            raise ConfigError(
                f"n_filters {self.n_filters} doubled over {len(self.ratios)} strides gives {widest} channels; "
                f"at most {MAX_CHANNELS_WIDEST}"
            )
        entries = self.n_q * self.codebook_size * self.dimension
        if entries > MAX_CODEBOOK_VALUES:
            raise ConfigError(
                f"n_q x codebook_size x dimension = {entries} codebook values; at most {MAX_CODEBOOK_VALUES}"
            )
        if self.decoder not in ("seanet", "istft"):
            raise ConfigError(f"decoder must be 'seanet' or 'istft', got {self.decoder!r}")
        if self.decoder_phase not in ("absolute", "integrated", "recovered"):
            raise ConfigError(
                f"decoder_phase must be 'absolute', 'integrated' or 'recovered', got {self.decoder_phase!r}"
            )
        if self.decoder == "istft" and (self.n_fft % self.hop_length or self.channels != 1):
            raise ConfigError(
                f"the istft decoder needs n_fft a multiple of the hop length {self.hop_length} "
                f"(got {self.n_fft}) and one channel (got {self.channels})"
            )
        if self.hop_length % self.decoder_subframes:
            raise ConfigError(
                f"decoder_subframes {self.decoder_subframes} must divide the hop length {self.hop_length}"
            )
        if self.decoder_phase == "recovered" and self.n_fft < 4 * self.hop_length // self.decoder_subframes:
            raise ConfigError(
                f"decoder_phase 'recovered' needs frames overlapping by 3/4: n_fft {self.n_fft} is under 4 hops of "
                f"{self.hop_length // self.decoder_subframes} samples; raise decoder_subframes or n_fft"
            )

        if not isinstance(self.decoder_harmonics, bool):
            raise ConfigError(f"decoder_harmonics must be true or false, got {self.decoder_harmonics!r}")
        if self.decoder_harmonics and (self.decoder != "istft" or self.decoder_phase == "recovered"
                                       or self.decoder_subframes != 1):
            raise ConfigError(
                "decoder_harmonics needs decoder 'istft' with decoder_phase 'absolute' or 'integrated' and "
                f"decoder_subframes 1, got decoder {self.decoder!r}, decoder_phase {self.decoder_phase!r}, "
                f"decoder_subframes {self.decoder_subframes}"
            )

    @property
    def hop_length(self) -> int:
        """Samples per code frame (product of the ratios)."""
        return math.prod(self.ratios)

    @property
    def frame_rate_hz(self) -> float:
        """Code frames per second."""
        return self.sample_rate / self.hop_length

    @property
    def bits_per_codebook(self) -> float:
        """Bits that one code of one codebook carries before entropy coding."""
        return bitrate.bits_per_code(self.codebook_size)

    @property
    def bandwidths_kbps(self) -> tuple[float, ...]:
        """Nominal bitrate of each usable codebook count, 1 to ``n_q``."""
        return bitrate.bandwidths_kbps(self.n_q, self.frame_rate_hz, self.codebook_size)


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Builds the dataclass ``cls`` from ``data``, checking every key and type.

    Args:
        cls: A dataclass type; nested dataclass fields are built recursively.
        data: Mapping of field names to values (as read from YAML or JSON).
        where: Prefix for error messages (the path of the enclosing key).

    Returns:
        An instance of ``cls``.

    Raises:
        ConfigError: On an unknown key or a value that does not fit its field.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown config key {where + unknown[0]!r}; valid keys of {cls.__name__}: "
            f"{', '.join(sorted(names))}"
        )
    values = {key: _coerce(hints[key], value, where + key) for key, value in data.items()}
    return cls(**values)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    """Checks ``value`` against the type ``hint`` and converts lists to tuples."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, key + ".")
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, key)
            except ConfigError:
                continue
        raise ConfigError(f"config key {key!r}: {value!r} does not fit {hint}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r}: expected a list, got {value!r}")
        item = typing.get_args(hint)[0]
        return tuple(_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is Any:
        return value
    if hint in (int, float, str, bool):
        if isinstance(value, bool) and hint is not bool:
            raise ConfigError(f"config key {key!r}: expected {hint.__name__}, got {value!r}")
        if not isinstance(value, hint):
            raise ConfigError(
                f"config key {key!r}: expected {hint.__name__}, got {type(value).__name__} {value!r}"
            )
        return value
    raise ConfigError(f"config key {key!r}: unsupported field type {hint}")


def load_yaml(cls: type[T], path: str | Path, overrides: dict[str, Any] | None = None) -> T:
    """Loads a dataclass config from a YAML file, with optional dotted overrides.

    Args:
        cls: The dataclass type to build.
        path: YAML file whose top-level mapping holds the fields of ``cls``.
        overrides: ``{"optim.lr": 1e-3}``-style values applied over the file.

    Returns:
        An instance of ``cls``.

    Raises:
        ConfigError: If the file is missing, not valid YAML, not a mapping, or has a bad key.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    with open(path, encoding="utf-8") as f:
        try:
            data = yaml.load(f, Loader=_ConfigLoader) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {dotted!r}: {part!r} is not a section")
        node[leaf] = value
    try:
        return from_dict(cls, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Parses ``key=value`` command-line overrides; values are read as YAML scalars.

    Raises:
        ConfigError: If an item has no ``=`` or its value is not valid YAML.
    """
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (for example optim.lr=1e-3)")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = yaml.load(raw, Loader=_ConfigLoader)
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: the value is not valid YAML: {e}") from None
    return out


def to_dict(config: Any) -> dict[str, Any]:
    """Turns a (nested) dataclass config into plain lists and dicts for JSON/YAML."""
    def convert(value: Any) -> Any:
        if isinstance(value, tuple):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value

    return {k: convert(v) for k, v in dataclasses.asdict(config).items()}
