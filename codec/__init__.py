"""rvq-codec: a streamable neural audio codec with residual vector quantization."""

from __future__ import annotations

from codec.config import CodecConfig
from codec.errors import (
    BandwidthError,
    CodecError,
    ConfigError,
    FormatError,
    InputError,
    ModelMismatchError,
    ModelNotFoundError,
    SampleRateError,
)
from codec.model import Codec, CodecOutput, EncodedAudio, pretrained_names
from codec.presets import codec_16khz, codec_24khz, codec_tiny

__version__ = "0.1.0"

__all__ = [
    "BandwidthError",
    "Codec",
    "CodecConfig",
    "CodecError",
    "CodecOutput",
    "ConfigError",
    "EncodedAudio",
    "FormatError",
    "InputError",
    "ModelMismatchError",
    "ModelNotFoundError",
    "SampleRateError",
    "codec_16khz",
    "codec_24khz",
    "codec_tiny",
    "pretrained_names",
]
