"""Causal SEANet encoder and decoder (the convolutional backbone of EnCodec).

Encoder, for decoder ratios ``(8, 5, 4, 2)`` and ``n_filters = C``::

    wav [B, 1, T] -> conv k7 -> C
      -> [res block, ELU, conv k4 /2] -> 2C      (strides in reverse order)
      -> [res block, ELU, conv k8 /4] -> 4C
      -> [res block, ELU, conv k10 /5] -> 8C
      -> [res block, ELU, conv k16 /8] -> 16C
      -> LSTM (+skip) -> ELU -> conv k7 -> latent [B, D, T / 320]

The decoder mirrors it with transposed convolutions. Every layer is causal
and streamable (see :mod:`codec.network.layers`). An ELU whose input nothing else
reads runs in place, which saves a copy of the largest activations.

Inference (no autograd, no tracing), offline or inside ``streaming()``, runs
the same layers in time-major layout, ``[B, T, C]`` (:meth:`time_major`):
there every convolution, strided and transposed ones included, is a few
matrix products on views of its input, with no padding, copying or
interleaving in between (faster on CPU than torch's convolutions on these
shapes; see :func:`codec.network.layers.time_major_conv`). Streaming, each layer
carries the same state in either layout. Training and export use the
``[B, C, T]`` modules.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from codec.network.config import CodecConfig
from codec.network.layers import StreamingConv1d, StreamingConvTranspose1d, StreamingLSTM, eager_inference


def _time_major(layers: nn.Sequential, x: Tensor) -> Tensor:
    """Runs ``layers`` on ``x`` [B, T, C]; element-wise layers (ELU) take any layout."""
    for layer in layers:
        if isinstance(layer, nn.ELU):  # directly: a module call costs more than a one-frame ELU
            x = F.elu(x, layer.alpha, layer.inplace)
        else:
            x = layer.time_major(x) if hasattr(layer, "time_major") else layer(x)
    return x


class ResidualBlock(nn.Module):
    """``x + conv1x1(ELU(conv_k_dilated(ELU(x))))`` with narrowed hidden channels.

    Args:
        channels: Channels in and out.
        kernel_size: Kernel of the dilated convolution.
        dilation: Its dilation.
        compress: Hidden channels are ``channels // compress``.
    """

    def __init__(self, channels: int, kernel_size: int, dilation: int, compress: int) -> None:
        super().__init__()
        hidden = max(channels // compress, 1)
        self.block = nn.Sequential(
            nn.ELU(),
            StreamingConv1d(channels, hidden, kernel_size, dilation=dilation),
            nn.ELU(inplace=True),
            StreamingConv1d(hidden, channels, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, T] -> [B, C, T]."""
        return self.block(x).add_(x)

    def time_major(self, x: Tensor) -> Tensor:
        """[B, T, C] -> [B, T, C]."""
        return _time_major(self.block, x).add_(x)


class _SEANet(nn.Sequential):
    """Runs inference time-major and everything else (autograd, tracing) as ``[B, C, T]`` modules."""

    def forward(self, x: Tensor) -> Tensor:
        """[B, C_in, T_in] -> [B, C_out, T_out]."""
        if not eager_inference(x, self):
            return super().forward(x)
        return self.time_major(x.transpose(1, 2)).transpose(1, 2).contiguous()

    def time_major(self, x: Tensor) -> Tensor:
        """Inference in time-major layout: [B, T_in, C_in] -> [B, T_out, C_out]."""
        return _time_major(self, x)


def _residual_stack(channels: int, config: CodecConfig) -> list[nn.Module]:
    return [
        ResidualBlock(channels, config.residual_kernel_size, config.dilation_base**j, config.compress)
        for j in range(config.n_residual_layers)
    ]


class SEANetEncoder(_SEANet):
    """Waveform ``[B, channels, T]`` to latent ``[B, dimension, T / hop]``."""

    def __init__(self, config: CodecConfig) -> None:
        channels = config.n_filters
        layers: list[nn.Module] = [StreamingConv1d(config.channels, channels, config.kernel_size)]
        for ratio in reversed(config.ratios):
            layers += _residual_stack(channels, config)
            layers += [nn.ELU(inplace=True), StreamingConv1d(channels, 2 * channels, 2 * ratio, stride=ratio)]
            channels *= 2
        if config.lstm_layers:
            layers.append(StreamingLSTM(channels, config.lstm_layers))
        layers += [nn.ELU(inplace=True), StreamingConv1d(channels, config.dimension, config.last_kernel_size)]
        super().__init__(*layers)


class SEANetDecoder(_SEANet):
    """Latent ``[B, dimension, F]`` to waveform ``[B, channels, F * hop]``."""

    def __init__(self, config: CodecConfig) -> None:
        channels = config.n_filters * 2 ** len(config.ratios)
        layers: list[nn.Module] = [StreamingConv1d(config.dimension, channels, config.kernel_size)]
        if config.lstm_layers:
            layers.append(StreamingLSTM(channels, config.lstm_layers))
        for ratio in config.ratios:
            layers += [nn.ELU(inplace=True), StreamingConvTranspose1d(channels, channels // 2, 2 * ratio, stride=ratio)]
            channels //= 2
            layers += _residual_stack(channels, config)
        layers += [nn.ELU(inplace=True), StreamingConv1d(channels, config.channels, config.last_kernel_size)]
        super().__init__(*layers)
