"""Discriminators: multi-scale (MelGAN), multi-period (HiFi-GAN), multi-scale STFT (EnCodec), banded STFT (DAC).

Every sub-discriminator maps a waveform ``[B, 1, T]`` to logits and the list
of its intermediate feature maps (for the feature-matching loss).
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm

from codec.errors import ConfigError
from train.config import DiscConfig

#: (logits, feature maps) of one sub-discriminator.
DiscOutput = tuple[Tensor, list[Tensor]]


def _run(layers: nn.ModuleList, head: nn.Module, x: Tensor) -> DiscOutput:
    features = []
    for layer in layers:
        x = F.leaky_relu(layer(x), 0.2)
        features.append(x)
    return head(x), features


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN period discriminator: the waveform folded into ``[B, 1, T / p, p]``, 2-d convs along time.

    Args:
        period: Fold period ``p``.
        channels: Output channels of the strided convolutions.
    """

    def __init__(self, period: int, channels: tuple[int, ...]) -> None:
        super().__init__()
        self.period = period
        layers, prev = [], 1
        for i, ch in enumerate(channels):
            stride = (3, 1) if i < len(channels) - 1 else (1, 1)
            layers.append(weight_norm(nn.Conv2d(prev, ch, (5, 1), stride, padding=(2, 0))))
            prev = ch
        self.layers = nn.ModuleList(layers)
        self.head = weight_norm(nn.Conv2d(prev, 1, (3, 1), padding=(1, 0)))

    def forward(self, wav: Tensor) -> DiscOutput:
        """``wav`` [B, 1, T] -> logits [B, 1, T', p] and features."""
        b, c, t = wav.shape
        pad = -t % self.period
        x = F.pad(wav, (0, pad), mode="reflect" if pad < t else "constant")
        x = x.view(b, c, -1, self.period)  # [B, 1, T / p, p]
        return _run(self.layers, self.head, x)


class ScaleDiscriminator(nn.Module):
    """MelGAN scale discriminator: strided grouped 1-d convolutions.

    Args:
        channels: Channels of its convolutions; the first has kernel 15, the
            middle ones kernel 41 stride 4 with groups, the last kernel 5.
    """

    def __init__(self, channels: tuple[int, ...]) -> None:
        super().__init__()
        layers = [weight_norm(nn.Conv1d(1, channels[0], 15, padding=7))]
        for prev, ch in itertools.pairwise(channels[:-1]):
            groups = max(min(prev, ch) // 4, 1)
            layers.append(weight_norm(nn.Conv1d(prev, ch, 41, stride=4, padding=20, groups=groups)))
        layers.append(weight_norm(nn.Conv1d(channels[-2], channels[-1], 5, padding=2)))
        self.layers = nn.ModuleList(layers)
        self.head = weight_norm(nn.Conv1d(channels[-1], 1, 3, padding=1))

    def forward(self, wav: Tensor) -> DiscOutput:
        """``wav`` [B, 1, T] -> logits [B, 1, T'] and features."""
        return _run(self.layers, self.head, wav)


class STFTDiscriminator(nn.Module):
    """EnCodec-style discriminator on the complex STFT (real and imaginary parts as 2 channels).

    Args:
        window: STFT window and FFT size; hop is a quarter of it.
        filters: Channels of its 2-d convolutions.
    """

    def __init__(self, window: int, filters: int) -> None:
        super().__init__()
        self.window = window
        dilations = (1, 2, 4)
        layers = [weight_norm(nn.Conv2d(2, filters, (3, 9), padding=(1, 4)))]
        for d in dilations:
            layers.append(weight_norm(nn.Conv2d(filters, filters, (3, 9), (1, 2), padding=(d, 4), dilation=(d, 1))))
        layers.append(weight_norm(nn.Conv2d(filters, filters, (3, 3), padding=(1, 1))))
        self.layers = nn.ModuleList(layers)
        self.head = weight_norm(nn.Conv2d(filters, 1, (3, 3), padding=(1, 1)))

    def forward(self, wav: Tensor) -> DiscOutput:
        """``wav`` [B, 1, T] -> logits [B, 1, frames, bins'] and features."""
        spec = torch.stft(
            wav[:, 0], self.window, self.window // 4, window=torch.hann_window(self.window, device=wav.device),
            return_complex=True, normalized=True,
        )  # [B, bins, frames]
        x = torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3)  # [B, 2, frames, bins]
        return _run(self.layers, self.head, x)


class BandedSTFTDiscriminator(nn.Module):
    """DAC-style multi-resolution STFT discriminator at one window: each frequency band has its own 2-d convolutions.

    The complex STFT (Hann window, hop a quarter) enters as real and imaginary
    channels ``[B, 2, frames, bins]`` (or, with ``magnitude_only``, as one
    channel of ``log10`` magnitudes floored at 1e-5, the scale of the log-mel
    loss: a critic of the spectrogram's texture that has no phase to judge,
    as UnivNet's resolution critic judges magnitudes); each band of bins goes
    through its own stack (kernel 3 x 9, the middle three strided by 2 along
    frequency), the band outputs are joined along frequency and one last
    convolution gives the logits. Separate weights per band let the critic judge high bands,
    where speech has little energy, on their own terms.

    Args:
        window: STFT window and FFT size.
        channels: Channels of every convolution.
        bands: Band edges as fractions of the ``window // 2 + 1`` bins.
        magnitude_only: Judge log-magnitudes instead of the complex spectrum.
    """

    def __init__(self, window: int, channels: int, bands: tuple[float, ...], magnitude_only: bool = False) -> None:
        super().__init__()
        self.window, self.magnitude_only = window, magnitude_only
        bins = window // 2 + 1
        self.edges = [(int(lo * bins), int(hi * bins)) for lo, hi in itertools.pairwise(bands)]
        self.bands = nn.ModuleList(self._band(channels, 1 if magnitude_only else 2) for _ in self.edges)
        self.head = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    @staticmethod
    def _band(channels: int, inputs: int) -> nn.ModuleList:
        layers = [weight_norm(nn.Conv2d(inputs, channels, (3, 9), padding=(1, 4)))]
        layers += [weight_norm(nn.Conv2d(channels, channels, (3, 9), (1, 2), padding=(1, 4))) for _ in range(3)]
        layers.append(weight_norm(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))))
        return nn.ModuleList(layers)

    def forward(self, wav: Tensor) -> DiscOutput:
        """``wav`` [B, 1, T] -> logits [B, 1, frames, bins'] and every band's features."""
        spec = torch.stft(
            wav[:, 0], self.window, self.window // 4, window=torch.hann_window(self.window, device=wav.device),
            return_complex=True,
        )  # [B, bins, frames]
        if self.magnitude_only:
            x = spec.abs().clamp(min=1e-5).log10().unsqueeze(1).transpose(2, 3)  # [B, 1, frames, bins]
        else:
            x = torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3)  # [B, 2, frames, bins]
        features, outputs = [], []
        for (lo, hi), layers in zip(self.edges, self.bands):
            y = x[..., lo:hi]
            for layer in layers:
                y = F.leaky_relu(layer(y), 0.1)
                features.append(y)
            outputs.append(y)
        return self.head(torch.cat(outputs, dim=-1)), features


class Discriminators(nn.Module):
    """All configured sub-discriminators; ``forward`` returns one output per sub-discriminator."""

    def __init__(self, config: DiscConfig) -> None:
        super().__init__()
        unknown = set(config.kinds) - {"msd", "mpd", "msstft", "mrd"}
        if unknown:
            raise ConfigError(f"unknown discriminator kind(s) {sorted(unknown)}; use msd, mpd, msstft or mrd")
        subs: list[nn.Module] = []
        if "msd" in config.kinds:
            subs += [ScaleDiscriminator(config.msd_channels) for _ in range(config.msd_scales)]
        if "mpd" in config.kinds:
            subs += [PeriodDiscriminator(p, config.mpd_channels) for p in config.mpd_periods]
        if "msstft" in config.kinds:
            subs += [STFTDiscriminator(w, config.msstft_filters) for w in config.msstft_windows]
        if "mrd" in config.kinds:
            subs += [BandedSTFTDiscriminator(w, config.mrd_channels, config.mrd_bands, config.mrd_magnitude_only)
                     for w in config.mrd_windows]
        self.subs = nn.ModuleList(subs)
        self.msd_scales = config.msd_scales if "msd" in config.kinds else 0

    def forward(self, wav: Tensor) -> list[DiscOutput]:
        """``wav`` [B, 1, T] -> ``[(logits, features), ...]``; MSD scale ``i`` sees ``wav`` pooled ``2**i``."""
        outputs = []
        for i, sub in enumerate(self.subs):
            x = wav
            if i < self.msd_scales:
                for _ in range(i):
                    x = F.avg_pool1d(x, 4, stride=2, padding=2)
            outputs.append(sub(x))
        return outputs
