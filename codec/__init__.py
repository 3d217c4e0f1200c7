"""rvq-codec: a streamable neural audio codec with residual vector quantization.

The model classes load on first use (``codec.Codec``), so commands that only
read file headers (``codec info``) start without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from codec.network.config import CodecConfig
    from codec.network.model import Codec, CodecOutput, EncodedAudio, pretrained_names
    from codec.network.presets import codec_16khz, codec_24khz, codec_tiny

__version__ = "0.1.0"

#: Names exported from modules that import torch or yaml, loaded when first read.
_LAZY = {
    "CodecConfig": "codec.network.config",
    "Codec": "codec.network.model",
    "CodecOutput": "codec.network.model",
    "EncodedAudio": "codec.network.model",
    "pretrained_names": "codec.network.model",
    "codec_16khz": "codec.network.presets",
    "codec_24khz": "codec.network.presets",
    "codec_tiny": "codec.network.presets",
}

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


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'codec' has no attribute {name!r}")
