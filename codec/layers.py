"""Causal, streamable building blocks: convolution, transposed convolution, LSTM.

Padding is all on the left, so an output sample never depends on a later
input sample. For a convolution of kernel ``k``, stride ``s`` and dilation
``d`` (effective kernel ``e = (k - 1) * d + 1``)::

    input   [ e - s zeros | x0 x1 x2 ... ]      offline: zeros on the left
    state   [ last e - s samples seen ]          streaming: the past instead

and an input of ``n * s`` samples gives exactly ``n`` outputs. A transposed
convolution of kernel ``k`` and stride ``s`` makes ``(n - 1) * s + k`` samples
from ``n`` frames; the first ``n * s`` are final, the last ``k - s`` still
receive contributions from the next frame and are kept as state::

    frames  f0        f1        f2
    output  [--s--|k-s]
                  [--s--|k-s]
                        [--s--|k-s]  -> pending overlap, added to the next call
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm

from codec.streaming import StreamingModule


def lecun_init_(conv: nn.Conv1d | nn.ConvTranspose1d) -> nn.Module:
    """Initialises ``conv`` to keep the signal's variance: weights ``N(0, 1 / fan_in)``, zero bias.

    ``fan_in`` is the number of inputs that meet in one output sample
    (``in * k`` for a convolution, ``in * k / stride`` for a transposed one).
    PyTorch's default (uniform with gain ``1/sqrt(3)`` and a bias as large as
    the weights) shrinks the signal at every layer, so after the encoder's
    twenty or so layers the latent is nearly a constant set by the biases, and
    k-means and EMA codebooks collapse onto it (all frames, one code).
    """
    in_channels = conv.in_channels // conv.groups
    fan_in = in_channels * conv.kernel_size[0]
    if isinstance(conv, nn.ConvTranspose1d):
        fan_in = max(fan_in // conv.stride[0], 1)
    nn.init.normal_(conv.weight, std=fan_in**-0.5)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


@dataclass
class ConvState:
    """Past input samples of a causal convolution, ``[B, C, e - s]`` at rest."""

    previous: torch.Tensor


class StreamingConv1d(StreamingModule[ConvState]):
    """Causal 1-d convolution with weight norm.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Kernel size.
        stride: Stride; an input of ``n * stride`` samples gives ``n`` outputs.
        dilation: Dilation.
        bias: Whether to add a bias.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.conv = weight_norm(
            lecun_init_(nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation, bias=bias))
        )
        self.stride = stride
        self.effective_kernel = (kernel_size - 1) * dilation + 1
        self.context = self.effective_kernel - stride

    def init_state(self, x: torch.Tensor) -> ConvState:
        return ConvState(x.new_zeros(x.shape[0], x.shape[1], max(self.context, 0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolves ``x`` [B, C_in, T] into [B, C_out, (T + buffered) // stride]."""
        if not self.is_streaming and self.context >= 0:
            # Offline the past is zeros: let the convolution pad both sides (no copy of x) and
            # drop the outputs that only the right padding reaches.
            n_frames = x.shape[-1] // self.stride
            conv = self.conv
            if n_frames == 0:
                return x.new_zeros(x.shape[0], conv.out_channels, 0)
            return F.conv1d(x, conv.weight, conv.bias, self.stride, self.context, conv.dilation)[..., :n_frames]
        state = self.get_state(x)
        x = torch.cat([state.previous, x], dim=-1)  # [B, C_in, past + T]
        n_frames = max((x.shape[-1] - self.effective_kernel) // self.stride + 1, 0)
        consumed = n_frames * self.stride
        self.set_state(ConvState(x[..., consumed:]))
        if n_frames == 0:
            return x.new_zeros(x.shape[0], self.conv.out_channels, 0)
        return self.conv(x[..., : consumed + self.context])


@dataclass
class ConvTransposeState:
    """The last input frames, ``[B, C_in, taps - 1]``, whose outputs still overlap the next frame's,
    and the polyphase weight and bias, built once per stream."""

    previous: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor


class StreamingConvTranspose1d(StreamingModule[ConvTransposeState]):
    """Causal 1-d transposed convolution with weight norm; ``n`` frames give ``n * stride`` samples.

    It runs as its polyphase equivalent: output sample ``f * s + r`` is
    ``sum_q W[:, :, r + q * s]^T x[f - q]``, a causal convolution over frames
    with ``taps = ceil(k / s)`` taps and ``C_out * s`` output channels whose
    phases are then interleaved in time. That gives the same numbers as the
    transposed convolution with its right overlap held back, through the
    library's fast convolution kernels, and its streaming state is just the
    last ``taps - 1`` input frames.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Kernel size, at least ``stride``.
        stride: Upsampling factor.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        if kernel_size < stride:
            raise ValueError(f"kernel_size {kernel_size} must be >= stride {stride}")
        self.convtr = weight_norm(
            lecun_init_(nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride, bias=False))
        )
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.stride = stride
        self.taps = -(-kernel_size // stride)

    def init_state(self, x: torch.Tensor) -> ConvTransposeState:
        return ConvTransposeState(x.new_zeros(x.shape[0], x.shape[1], self.taps - 1), *self.polyphase_weight())

    def polyphase_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The equivalent convolution's weight ``[C_out * s, C_in, taps]`` and bias ``[C_out * s]``."""
        weight = self.convtr.weight  # [C_in, C_out, k]
        c_in, c_out, k = weight.shape
        s, taps = self.stride, self.taps
        weight = F.pad(weight, (0, taps * s - k)).view(c_in, c_out, taps, s)  # kernel index q * s + r
        weight = weight.permute(1, 3, 0, 2).flip(-1).reshape(c_out * s, c_in, taps)  # tap taps-1-q meets x[f - q]
        return weight, self.bias.repeat_interleave(s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upsamples ``x`` [B, C_in, F] to [B, C_out, F * stride]."""
        batch, _, frames = x.shape
        if frames == 0:
            return x.new_zeros(batch, self.convtr.out_channels, 0)
        if self.is_streaming:
            state = self.get_state(x)
            x = torch.cat([state.previous, x], dim=-1)  # [B, C_in, taps - 1 + F]
            self.set_state(ConvTransposeState(x[..., x.shape[-1] - (self.taps - 1) :], state.weight, state.bias))
            weight, bias, padding = state.weight, state.bias, 0
        else:
            weight, bias = self.polyphase_weight()
            padding = self.taps - 1  # zeros before the first frame; outputs past F are dropped below
        y = F.conv1d(x, weight, bias, padding=padding)[..., :frames]  # [B, C_out * s, F]
        y = y.view(batch, -1, self.stride, frames).transpose(2, 3)  # [B, C_out, F, s]
        return y.reshape(batch, -1, frames * self.stride)


@dataclass
class LSTMState:
    """Hidden and cell states, each ``[num_layers, B, C]``."""

    h: torch.Tensor
    c: torch.Tensor


class StreamingLSTM(StreamingModule[LSTMState]):
    """Unidirectional LSTM over ``[B, C, T]`` with a skip connection (output = LSTM(x) + x).

    Args:
        dimension: Channels in and out.
        num_layers: LSTM layers.
    """

    def __init__(self, dimension: int, num_layers: int = 2) -> None:
        super().__init__()
        self.lstm = nn.LSTM(dimension, dimension, num_layers)

    def init_state(self, x: torch.Tensor) -> LSTMState:
        shape = (self.lstm.num_layers, x.shape[0], self.lstm.hidden_size)
        return LSTMState(x.new_zeros(shape), x.new_zeros(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Runs the LSTM over time; ``x`` and the result are [B, C, T]."""
        if x.shape[-1] == 0:
            return x  # nothing to run; torch's LSTM rejects empty sequences
        state = self.get_state(x)
        seq = x.permute(2, 0, 1)  # [T, B, C]
        y, (h, c) = self.lstm(seq, (state.h, state.c))
        self.set_state(LSTMState(h, c))
        return y.permute(1, 2, 0) + x  # [B, C, T]
