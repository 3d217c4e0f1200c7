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
class CodecConfig:
    """Architecture and quantizer settings of a :class:`~codec.model.Codec`.

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
            :mod:`codec.istft_decoder`).
        decoder_dim: Width of the ``"istft"`` decoder's backbone.
        decoder_layers: ConvNeXt blocks of the ``"istft"`` decoder.
        n_fft: Frame length of the ``"istft"`` decoder's inverse STFT, a
            multiple of the hop length (``2 * hop``: 40 ms windows at 16 kHz).
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
    n_q: int = 8
    codebook_size: int = 1024
    ema_decay: float = 0.99
    epsilon: float = 1e-5
    kmeans_iters: int = 50
    dead_code_ratio: float = 0.1
    quantizer_dropout: bool = True
    quantizer_bypass: float = 0.0

    def __post_init__(self) -> None:
        positive = ("sample_rate", "channels", "n_filters", "dimension", "n_q", "codebook_size")
        for key in positive:
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key} must be positive, got {getattr(self, key)}")
        if not self.ratios or any(r <= 0 for r in self.ratios):
            raise ConfigError(f"ratios must be positive integers, got {self.ratios}")
        if not 0.0 < self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.decoder not in ("seanet", "istft"):
            raise ConfigError(f"decoder must be 'seanet' or 'istft', got {self.decoder!r}")
        if self.decoder == "istft":
            if self.decoder_dim <= 0 or self.decoder_layers <= 0:
                raise ConfigError("decoder_dim and decoder_layers must be positive for the istft decoder")
            if self.n_fft <= 0 or self.n_fft % self.hop_length or self.channels != 1:
                raise ConfigError(
                    f"the istft decoder needs n_fft a positive multiple of the hop length {self.hop_length} "
                    f"(got {self.n_fft}) and one channel (got {self.channels})"
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
