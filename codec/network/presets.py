"""Named model presets."""

from __future__ import annotations

from codec.network.config import CodecConfig
from codec.network.model import Codec


def codec_16khz_config() -> CodecConfig:
    """16 kHz speech: hop 320 (50 Hz), 8 x 1024 codebooks = 0.5 to 4 kbps.

    Sized to train on CPUs and to run well above real time on one thread.
    """
    return CodecConfig(name="codec-16khz", sample_rate=16000, n_filters=16, dimension=64, ratios=(8, 5, 4, 2))


def codec_24khz_config() -> CodecConfig:
    """EnCodec-sized 24 kHz: 32 filters, dimension 128, hop 320 (75 Hz), 8 codebooks = 0.75 to 6 kbps.

    The architecture of EnCodec 24 kHz (arXiv 2210.13438), with our RVQ.
    """
    return CodecConfig(name="codec-24khz", sample_rate=24000, n_filters=32, dimension=128, ratios=(8, 5, 4, 2))


def codec_tiny_config() -> CodecConfig:
    """A few-thousand-parameter model for tests: hop 8, 4 x 64 codebooks."""
    return CodecConfig(
        name="codec-tiny", sample_rate=16000, n_filters=4, dimension=8, ratios=(4, 2),
        n_q=4, codebook_size=64, lstm_layers=1, kmeans_iters=5,
    )


def codec_16khz() -> Codec:
    """An untrained :func:`codec_16khz_config` model."""
    return Codec(codec_16khz_config())


def codec_24khz() -> Codec:
    """An untrained :func:`codec_24khz_config` model."""
    return Codec(codec_24khz_config())


def codec_tiny() -> Codec:
    """An untrained :func:`codec_tiny_config` model."""
    return Codec(codec_tiny_config())


PRESETS = {"16khz": codec_16khz_config, "24khz": codec_24khz_config, "tiny": codec_tiny_config}
