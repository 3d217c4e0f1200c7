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


def conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: int = 1,
    dilation: int = 1,
    left_pad: int = 0,
    groups: int = 1,
) -> torch.Tensor:
    """Convolution of ``x`` [B, C_in, T] preceded by ``left_pad`` zero samples.

    Returns ``[B, C_out, (T + left_pad - e) // stride + 1]`` for the effective
    kernel ``e = (k - 1) * dilation + 1``: only the outputs whose window lies
    on real or left-padded samples.
    """
    n = max((x.shape[-1] + left_pad - (weight.shape[-1] - 1) * dilation - 1) // stride + 1, 0)
    if n == 0:
        return x.new_zeros(x.shape[0], weight.shape[0], 0)
    # The op pads both sides (no copy of x); the outputs that only the right padding reaches are dropped.
    return F.conv1d(x, weight, bias, stride, left_pad, dilation, groups)[..., :n]


def eager_inference(x: torch.Tensor, module: nn.Module) -> bool:
    """Whether ``module`` runs on ``x`` without autograd, tracing or compilation (see :func:`time_major_conv`)."""
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
        return False
    if not torch.is_grad_enabled():
        return True
    return not (x.requires_grad or any(p.requires_grad for p in module.parameters()))


def time_major_conv(
    x: torch.Tensor, taps: torch.Tensor, bias: torch.Tensor | None, dilation: int = 1, left_pad: int = 0
) -> torch.Tensor:
    """Stride-1 convolution in time-major layout, one matrix product per kernel tap.

    Output row ``t`` is ``bias + sum_j x[t + j * dilation - left_pad] @ taps[j]``
    with zero rows before the input: ``[B, T, K]`` and taps ``[k, K, C_out]``
    give ``[B, T + left_pad - (k - 1) * dilation, C_out]``. Each product reads
    and writes whole rows of a row-major matrix in place, so nothing is padded
    or copied, and the work goes to the BLAS matrix kernel. CPU torch's
    convolution is up to several times slower on an audio codec's shapes (a
    few channels by tens of thousands of samples): the bundled model encodes
    and decodes about 1.3 times faster this way (MODEL_CARD.md, Speed).
    """
    batch, length, _ = x.shape
    k, _, c_out = taps.shape
    n = max(length + left_pad - (k - 1) * dilation, 0)
    y = x.new_empty(batch, n, c_out)
    if n == 0:
        return y
    bias = bias if bias is not None else x.new_zeros(c_out)
    shifts = [left_pad - j * dilation for j in range(k)]  # row t of the output meets row t - shift_j
    for b in range(batch):
        # The last tap reaches no padding (left_pad <= (k - 1) * dilation): it covers every
        # output row and starts the sum; the others add where their input rows exist.
        torch.addmm(bias, x[b, -shifts[-1] : n - shifts[-1]], taps[-1], out=y[b])
        for j in range(k - 1):
            lo = max(shifts[j], 0)
            if lo < n:
                y[b, lo:].addmm_(x[b, lo - shifts[j] : n - shifts[j]], taps[j])
    return y


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
        groups: Channel groups (``in_channels`` for a depthwise convolution).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        bias: bool = True,
        groups: int = 1,
    ) -> None:
        super().__init__()
        conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation, bias=bias, groups=groups)
        self.conv = weight_norm(lecun_init_(conv))
        self.stride = stride
        self.effective_kernel = (kernel_size - 1) * dilation + 1
        self.context = self.effective_kernel - stride

    def init_state(self, x: torch.Tensor) -> ConvState:
        return ConvState(x.new_zeros(x.shape[0], x.shape[1], max(self.context, 0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolves ``x`` [B, C_in, T] into [B, C_out, (T + buffered) // stride]."""
        conv = self.conv
        if not self.is_streaming and self.context >= 0:
            # Offline the past is zeros; the right end drops what a whole stride does not cover.
            x = x[..., : x.shape[-1] // self.stride * self.stride]
            return conv1d(x, conv.weight, conv.bias, self.stride, conv.dilation[0], self.context, conv.groups)
        state = self.get_state(x)
        x = torch.cat([state.previous, x], dim=-1)  # [B, C_in, past + T]
        n_frames = max((x.shape[-1] - self.effective_kernel) // self.stride + 1, 0)
        consumed = n_frames * self.stride
        self.set_state(ConvState(x[..., consumed:]))
        return conv1d(x[..., : consumed + self.context], conv.weight, conv.bias, self.stride, conv.dilation[0],
                      groups=conv.groups)

    def time_major(self, x: torch.Tensor) -> torch.Tensor:
        """Offline inference in time-major layout: ``x`` [B, T, C_in] to [B, T // stride, C_out].

        A strided convolution is a stride-1 one over blocks of ``stride``
        samples: the ``[B, T, C]`` input viewed as ``[B, T / s, s * C]``,
        with the kernel front-padded to ``taps * s`` and cut into ``taps``
        blocks (``taps - 1`` blocks of left context). A single input channel
        gathers its windows instead (a product with one inner channel is slow).
        """
        weight, bias = self.conv.weight, self.conv.bias  # [C_out, C_in, k]
        c_out, c_in, k = weight.shape
        s, d = self.stride, self.conv.dilation[0]
        if self.conv.groups != 1:
            return self(x.transpose(1, 2)).transpose(1, 2)
        if s == 1 and c_in == 1:
            windows = F.pad(x[..., 0], (self.context, 0)).unfold(-1, self.effective_kernel, 1)[..., ::d]  # [B, T, k]
            return windows @ weight[:, 0].t() + (bias if bias is not None else 0)
        if s == 1:
            return time_major_conv(x, weight.permute(2, 1, 0).contiguous(), bias, d, self.context)  # [k, C_in, C_out]
        if d != 1:
            return self(x.transpose(1, 2)).transpose(1, 2)
        batch, length, _ = x.shape
        blocks = length // s
        x = x[:, : blocks * s].reshape(batch, blocks, s * c_in)
        taps = -(-k // s)
        weight = F.pad(weight, (taps * s - k, 0)).view(c_out, c_in, taps, s)  # kernel index j * s + r
        weight = weight.permute(2, 3, 1, 0).reshape(taps, s * c_in, c_out)  # row r * C_in + c of tap j
        return time_major_conv(x, weight, bias, 1, taps - 1)


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

    def time_major(self, x: torch.Tensor) -> torch.Tensor:
        """Offline inference in time-major layout: ``x`` [B, F, C_in] to [B, F * stride, C_out].

        The polyphase convolution's output row ``f``, ordered phase by phase
        (column ``r * C_out + c``), is already the ``stride`` output samples
        of frame ``f`` in time-major order, so the interleaving is a view.
        """
        weight = self.convtr.weight  # [C_in, C_out, k]
        c_in, c_out, k = weight.shape
        s, taps = self.stride, self.taps
        weight = F.pad(weight, (0, taps * s - k)).view(c_in, c_out, taps, s).flip(2)  # tap taps-1-q meets x[f-q]
        weight = weight.permute(2, 0, 3, 1).reshape(taps, c_in, s * c_out)
        y = time_major_conv(x, weight, self.bias.repeat(s), 1, taps - 1)  # [B, F, s * C_out]
        return y.view(x.shape[0], -1, c_out)


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

    def time_major(self, x: torch.Tensor) -> torch.Tensor:
        """Offline inference in time-major layout: ``x`` and the result are [B, T, C]."""
        if x.shape[1] == 0:
            return x
        y, _ = self.lstm(x.transpose(0, 1))  # [T, B, C]
        return y.transpose(0, 1) + x
