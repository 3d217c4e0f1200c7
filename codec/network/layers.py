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

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm

from codec.network.streaming import StreamingModule, kept


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
    y = F.conv1d(x, weight, bias, stride, left_pad, dilation, groups)
    return y if left_pad == 0 else y[..., :n]  # unpadded, there is nothing to drop (and an exported graph no slice)


def eager_inference(x: torch.Tensor, module: nn.Module) -> bool:
    """Whether ``module`` runs on ``x`` without autograd, tracing or compilation (see :func:`time_major_conv`)."""
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
        return False
    if not torch.is_grad_enabled():
        return True
    return not (x.requires_grad or any(p.requires_grad for p in module.parameters()))


def time_major_conv(
    x: torch.Tensor,
    taps: torch.Tensor | Sequence[torch.Tensor],
    bias: torch.Tensor | None,
    dilation: int = 1,
    left_pad: int = 0,
) -> torch.Tensor:
    """Stride-1 convolution in time-major layout, one matrix product per kernel tap.

    Output row ``t`` is ``bias + sum_j x[t + j * dilation - left_pad] @ taps[j]``
    with zero rows before the input: ``[B, T, K]`` and taps ``[k, K, C_out]``
    (or a sequence of ``k`` matrices ``[K, C_out]``, as a stream keeps them)
    give ``[B, T + left_pad - (k - 1) * dilation, C_out]``. Each product reads
    and writes whole rows of a row-major matrix in place, so nothing is padded
    or copied, and the work goes to the BLAS matrix kernel. CPU torch's
    convolution is up to several times slower on an audio codec's shapes (a
    few channels by tens of thousands of samples): the bundled model encodes
    and decodes about 1.3 times faster this way (MODEL_CARD.md, Speed).
    """
    batch, length, _ = x.shape
    k, c_out = len(taps), taps[-1].shape[-1]
    n = max(length + left_pad - (k - 1) * dilation, 0)
    y = x.new_empty(batch, n, c_out)
    if n == 0:
        return y
    bias = bias if bias is not None else x.new_zeros(c_out)
    if k == 1 and left_pad == 0:  # pointwise: one product over every row of the batch
        return torch.addmm(bias, x.reshape(batch * length, -1), taps[0], out=y.view(batch * length, c_out)).view_as(y)
    shifts = [left_pad - j * dilation for j in range(k)]  # row t of the output meets row t - shift_j
    for b in range(batch):
        x_b, y_b = (x[0], y[0]) if batch == 1 else (x[b], y[b])  # [T, K], [n, C_out]
        # The last tap reaches no padding (left_pad <= (k - 1) * dilation): it covers every
        # output row and starts the sum; the others add where their input rows exist.
        torch.addmm(bias, _rows(x_b, -shifts[-1], n - shifts[-1]), taps[-1], out=y_b)
        for j in range(k - 1):
            lo = max(shifts[j], 0)
            if lo < n:
                _rows(y_b, lo, n).addmm_(_rows(x_b, lo - shifts[j], n - shifts[j]), taps[j])
    return y


def _rows(x: torch.Tensor, start: int, stop: int, dim: int = 0) -> torch.Tensor:
    """``x[start:stop]`` along ``dim``, without making a view when that is all of ``x`` (one-frame streaming makes
    hundreds)."""
    return x if start == 0 and stop == x.shape[dim] else x.narrow(dim, start, stop - start)


@dataclass
class ConvState:
    """Past input samples of a causal convolution, ``[B, C, e - s]`` at rest.

    ``previous`` is kept in the layout of the last call: ``[B, e - s, C]``
    when ``time_major`` (so a time-major stream transposes nothing). ``taps``
    and ``bias`` are the time-major path's weights (see
    :meth:`StreamingConv1d.time_major_weights`), folded from the weight norm
    once per stream, on first use; ``window`` is the same weight as one
    ``[e * C_in, C_out]`` matrix where one output row is one product with its
    whole input window (see :meth:`StreamingConv1d.window_weight`).
    """

    previous: torch.Tensor
    taps: torch.Tensor | tuple[torch.Tensor, ...] | None = None
    bias: torch.Tensor | None = None
    window: torch.Tensor | None = None
    time_major: bool = False

    def channels_first(self) -> torch.Tensor:
        """``previous`` as ``[B, C, past]``."""
        return self.previous.transpose(1, 2) if self.time_major else self.previous

    def rows(self) -> torch.Tensor:
        """``previous`` as ``[B, past, C]``."""
        return self.previous if self.time_major else self.previous.transpose(1, 2)


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

    carried = ("previous",)

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
        self.in_channels, self.stride, self.dilation, self.kernel_size = in_channels, stride, dilation, kernel_size
        self.effective_kernel = (kernel_size - 1) * dilation + 1
        self.context = self.effective_kernel - stride
        # One filter per channel (a ConvNeXt block's): time-major, an element-wise product over each window.
        self.depthwise = 1 < groups == in_channels == out_channels and stride == 1

    def init_state(self, x: torch.Tensor) -> ConvState:
        return ConvState(x.new_zeros(x.shape[0], self.in_channels, max(self.context, 0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolves ``x`` [B, C_in, T] into [B, C_out, (T + buffered) // stride]."""
        conv = self.conv
        if not self.is_streaming and self.context >= 0:
            # Offline the past is zeros; the right end drops what a whole stride does not cover.
            x = x[..., : x.shape[-1] // self.stride * self.stride]
            return conv1d(x, conv.weight, conv.bias, self.stride, conv.dilation[0], self.context, conv.groups)
        state = self.get_state(x)
        x = torch.cat([state.channels_first(), x], dim=-1)  # [B, C_in, past + T]
        consumed = self._consumed(x.shape[-1])
        state.previous, state.time_major = kept(x[..., consumed:], x), False
        return conv1d(_rows(x, 0, consumed + self.context, -1), conv.weight, conv.bias, self.stride,
                      conv.dilation[0], groups=conv.groups)

    def _consumed(self, length: int) -> int:
        """Samples of a streamed input of ``length`` (past included) that whole output frames use up."""
        return max((length - self.effective_kernel) // self.stride + 1, 0) * self.stride

    def time_major(self, x: torch.Tensor) -> torch.Tensor:
        """Inference in time-major layout: ``x`` [B, T, C_in] to [B, T // stride, C_out].

        Offline the past is zeros; inside ``streaming()`` the layer carries the
        same state as :meth:`forward` (the two layouts may even alternate), so
        chunk by chunk it gives the offline numbers. A strided convolution is a
        stride-1 one over blocks of ``stride`` samples: the ``[B, T, C]``
        input viewed as ``[B, T / s, s * C]``, with the kernel front-padded to
        ``taps * s`` and cut into ``taps`` blocks (``taps - 1`` blocks of left
        context). A single input channel gathers its windows instead (a
        product with one inner channel is slow), and so does a depthwise
        convolution (one filter per channel). Any other grouped convolution
        runs as :meth:`forward`, on the same state.
        """
        if self.conv.groups != 1 and not self.depthwise:
            return self(x.transpose(1, 2)).transpose(1, 2)
        s = self.stride
        if not self._streaming:
            return self._time_major(x[:, : x.shape[1] // s * s], self.time_major_weights(), self.context)
        state = self.get_state(x)
        if state.taps is None:
            taps, state.bias = self.time_major_weights()
            matrices = self.in_channels > 1 and not self.depthwise and (self.stride == 1 or self.dilation == 1)
            state.taps = taps.unbind(0) if matrices else taps  # one matrix per tap
            state.window = self.window_weight(taps)
        if s == 1 and self.context == 0:  # pointwise: nothing to carry
            return self._time_major(x, (state.taps, state.bias), 0)
        if self.context > 0:
            x = torch.cat([state.rows(), x], dim=1)  # [B, past + T, C_in]
        consumed = self._consumed(x.shape[1])
        state.previous, state.time_major = kept(x[:, consumed:], x), True
        if x.shape[1] == self.effective_kernel and x.shape[0] == 1 and state.window is not None:  # one output
            window = x.reshape(1, -1)  # [1, e * C_in], the whole input
            y = torch.mm(window, state.window) if state.bias is None else torch.addmm(state.bias, window, state.window)
            return y.view(1, 1, -1)
        return self._time_major(_rows(x, 0, consumed + self.context, 1), (state.taps, state.bias), 0)

    def window_weight(self, taps: torch.Tensor) -> torch.Tensor | None:
        """The time-major ``taps`` as one ``[e * C_in, C_out]`` matrix (row ``i * C_in + c`` meets input
        sample ``i`` of the window, channel ``c``), when the taps cover the window without gaps (no dilation,
        a kernel of whole strides, several input channels); else None."""
        whole = self.stride == 1 or self.kernel_size % self.stride == 0
        if self.dilation != 1 or self.in_channels == 1 or self.depthwise or self.conv.groups != 1 or not whole:
            return None
        return taps.reshape(-1, taps.shape[-1])

    def time_major_weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The weight as :meth:`time_major` multiplies it, and the bias.

        ``[k, C_in, C_out]`` taps for stride 1 (``[k, C_out]`` for one input
        channel, ``[C, k]`` filters for a depthwise convolution),
        ``[taps, s * C_in, C_out]`` blocks for stride ``s``, the plain
        ``[C_out, C_in, k]`` weight for a dilated strided convolution.
        """
        weight, bias = self.conv.weight, self.conv.bias  # [C_out, C_in, k]
        c_out, c_in, k = weight.shape
        s, d = self.stride, self.conv.dilation[0]
        if self.depthwise:
            return weight[:, 0].contiguous(), bias
        if s == 1 and c_in == 1:
            return weight[:, 0].t().contiguous(), bias
        if s == 1:
            return weight.permute(2, 1, 0).contiguous(), bias
        if d != 1:
            return weight, bias
        taps = -(-k // s)
        weight = F.pad(weight, (taps * s - k, 0)).view(c_out, c_in, taps, s)  # kernel index j * s + r
        return weight.permute(2, 3, 1, 0).reshape(taps, s * c_in, c_out), bias  # row r * C_in + c of tap j

    def _time_major(
        self, x: torch.Tensor, weights: tuple[torch.Tensor, torch.Tensor | None], left_pad: int
    ) -> torch.Tensor:
        """Convolves ``x`` [B, T, C_in] after ``left_pad`` zero samples; ``T + left_pad - e`` is a multiple of the stride."""
        taps, bias = weights
        s, d = self.stride, self.dilation
        if self.depthwise:
            signal = F.pad(x, (0, 0, left_pad, 0)) if left_pad else x  # [B, left_pad + T, C]
            if signal.shape[1] < self.effective_kernel:
                return x.new_empty(x.shape[0], 0, x.shape[2])
            windows = signal.unfold(1, self.effective_kernel, 1)  # [B, T', C, e]
            y = torch.linalg.vecdot(windows if d == 1 else windows[..., ::d], taps)  # [B, T', C]
            return y if bias is None else y.add_(bias)
        if s == 1 and self.in_channels == 1:
            signal = F.pad(x[..., 0], (left_pad, 0)) if left_pad else x[..., 0]  # [B, left_pad + T]
            windows = signal.unfold(-1, self.effective_kernel, 1)[..., ::d]  # [B, T', k]
            batch, length, k = windows.shape
            windows = windows.reshape(batch * length, k)  # a copy: k samples per output, a small matrix
            y = torch.mm(windows, taps) if bias is None else torch.addmm(bias, windows, taps)
            return y.view(batch, length, -1)
        if s == 1:
            return time_major_conv(x, taps, bias, d, left_pad)
        if d != 1:
            return conv1d(x.transpose(1, 2), taps, bias, s, d, left_pad).transpose(1, 2)
        batch, length, c_in = x.shape
        front = len(taps) * s - self.kernel_size  # zero taps in front of the kernel
        pad_blocks, pad_samples = divmod(left_pad + front, s)
        if pad_samples:  # whole blocks only: the rest of the padding becomes real zero samples
            x = F.pad(x, (0, 0, pad_samples, 0))
            length += pad_samples
        x = x.reshape(batch, length // s, s * c_in)  # [B, blocks, s * C_in]
        return time_major_conv(x, taps, bias, 1, pad_blocks)


@dataclass
class ConvTransposeState:
    """The last input frames, ``[B, C_in, taps - 1]``, whose outputs still overlap the next frame's,
    and the polyphase weight and bias, built once per stream on first use (``weight`` and ``bias``: the
    channels-first path's; ``taps`` and ``phase_bias``: the time-major path's)."""

    previous: torch.Tensor
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    taps: tuple[torch.Tensor, ...] | None = None
    phase_bias: torch.Tensor | None = None
    window: torch.Tensor | None = None  # the taps as one [taps * C_in, s * C_out] matrix
    time_major: bool = False  # previous is [B, taps - 1, C_in]

    def channels_first(self) -> torch.Tensor:
        """``previous`` as ``[B, C_in, taps - 1]``."""
        return self.previous.transpose(1, 2) if self.time_major else self.previous

    def rows(self) -> torch.Tensor:
        """``previous`` as ``[B, taps - 1, C_in]``."""
        return self.previous if self.time_major else self.previous.transpose(1, 2)


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

    carried = ("previous",)

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        if kernel_size < stride:
            raise ValueError(f"kernel_size {kernel_size} must be >= stride {stride}")
        self.convtr = weight_norm(
            lecun_init_(nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride, bias=False))
        )
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.stride, self.out_channels = stride, out_channels
        self.taps = -(-kernel_size // stride)

    def init_state(self, x: torch.Tensor) -> ConvTransposeState:
        previous = x.new_zeros(x.shape[0], self.convtr.in_channels, self.taps - 1)
        return ConvTransposeState(previous)

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
            x = torch.cat([state.channels_first(), x], dim=-1)  # [B, C_in, taps - 1 + F]
            state.previous, state.time_major = kept(x[..., x.shape[-1] - (self.taps - 1) :], x), False
            if state.weight is None:
                state.weight, state.bias = self.polyphase_weight()
            weight, bias, padding = state.weight, state.bias, 0
        else:
            weight, bias = self.polyphase_weight()
            padding = self.taps - 1  # zeros before the first frame; outputs past F are dropped below
        y = F.conv1d(x, weight, bias, padding=padding)[..., :frames]  # [B, C_out * s, F]
        y = y.view(batch, -1, self.stride, frames).transpose(2, 3)  # [B, C_out, F, s]
        return y.reshape(batch, -1, frames * self.stride)

    def time_major(self, x: torch.Tensor) -> torch.Tensor:
        """Inference in time-major layout: ``x`` [B, F, C_in] to [B, F * stride, C_out].

        The polyphase convolution's output row ``f``, ordered phase by phase
        (column ``r * C_out + c``), is already the ``stride`` output samples
        of frame ``f`` in time-major order, so the interleaving is a view.
        Inside ``streaming()`` it carries the same state as :meth:`forward`.
        """
        batch, frames, _ = x.shape
        if not self._streaming:
            taps, bias = self.time_major_weights()
            y = time_major_conv(x, taps, bias, 1, self.taps - 1)  # [B, F, s * C_out]
            return y.view(batch, frames * self.stride, self.out_channels)
        state = self.get_state(x)
        if state.taps is None:
            taps, state.phase_bias = self.time_major_weights()
            state.taps, state.window = taps.unbind(0), taps.reshape(-1, taps.shape[-1])  # per tap; all at once
        if self.taps > 1:
            x = torch.cat([state.rows(), x], dim=1)  # [B, taps - 1 + F, C_in]
            state.previous, state.time_major = kept(x[:, frames:], x), True
        if frames == 1 and batch == 1:  # one frame: one product with its whole window
            y = torch.addmm(state.phase_bias, x.reshape(1, -1), state.window)  # [1, s * C_out]
        else:
            y = time_major_conv(x, state.taps, state.phase_bias, 1, 0)  # [B, F, s * C_out]
        return y.view(batch, frames * self.stride, self.out_channels)

    def time_major_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The polyphase taps ``[taps, C_in, s * C_out]`` (column ``r * C_out + c``) and bias ``[s * C_out]``."""
        weight = self.convtr.weight  # [C_in, C_out, k]
        c_in, c_out, k = weight.shape
        s, taps = self.stride, self.taps
        weight = F.pad(weight, (0, taps * s - k)).view(c_in, c_out, taps, s).flip(2)  # tap taps-1-q meets x[f-q]
        return weight.permute(2, 0, 3, 1).reshape(taps, c_in, s * c_out), self.bias.repeat(s)


def lstm_weights(lstm: nn.LSTM) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Each layer's ``(W_ih^T [C, 4H], W_hh^T [H, 4H], b_ih + b_hh [4H])`` with the gates reordered to
    ``i, f, o, g`` (torch stores ``i, f, g, o``): the three sigmoid gates come first, the tanh gate last."""
    hidden = lstm.hidden_size
    order = torch.cat([torch.arange(0, 2 * hidden), torch.arange(3 * hidden, 4 * hidden),
                       torch.arange(2 * hidden, 3 * hidden)]).to(lstm.weight_ih_l0.device)
    weights = []
    for layer in range(lstm.num_layers):
        w_ih, w_hh = getattr(lstm, f"weight_ih_l{layer}"), getattr(lstm, f"weight_hh_l{layer}")  # [4H, C], [4H, H]
        bias = getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}")  # [4H]
        weights.append((w_ih[order].t().contiguous(), w_hh[order].t().contiguous(), bias[order].contiguous()))
    return weights


def lstm_time_major(
    x: torch.Tensor,
    weights: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    h: torch.Tensor,
    c: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A stacked LSTM over ``x`` [B, T, C] from states ``h``, ``c`` [L, B, H], weights from :func:`lstm_weights`.

    Each layer projects its whole input at once (one matrix product), then
    steps through time with one ``[B, H] x [H, 4H]`` product and a few
    in-place element-wise ops per step. torch's CPU LSTM (oneDNN) costs
    about 2 ms of set-up per call, which one-frame streaming would pay twice
    per frame; over whole chunks the two take about the same time.

    Returns:
        The last layer's outputs ``[B, T, H]``, and ``h`` and ``c``, updated in place.
    """
    batch, length, _ = x.shape
    for layer, (w_ih, w_hh, bias) in enumerate(weights):
        hidden = w_hh.shape[0]
        gates_x = torch.addmm(bias, x.reshape(batch * length, -1), w_ih).view(batch, length, 4 * hidden)
        y = x.new_empty(batch, length, hidden)
        h_t, c_t = h[layer], c[layer]  # [B, H] each
        for t in range(length):
            gates = torch.addmm(gates_x[:, t], h_t, w_hh)  # [B, 4H]: i, f, o, g
            gates.narrow(1, 0, 3 * hidden).sigmoid_()
            i, f, o, g = gates.split(hidden, 1)
            g.tanh_()
            c_t.mul_(f).addcmul_(i, g)
            h_t = y[:, t]
            torch.tanh(c_t, out=h_t).mul_(o)
        h[layer] = h_t
        x = y
    return x, h, c


@dataclass
class LSTMState:
    """Hidden and cell states, each ``[num_layers, B, C]``."""

    h: torch.Tensor
    c: torch.Tensor
    weights: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None  # time-major, once per stream


class StreamingLSTM(StreamingModule[LSTMState]):
    """Unidirectional LSTM over ``[B, C, T]`` with a skip connection (output = LSTM(x) + x).

    Args:
        dimension: Channels in and out.
        num_layers: LSTM layers.
    """

    carried = ("h", "c")

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
        y, (h, c) = self.lstm(x.permute(2, 0, 1), (state.h, state.c))  # [T, B, C]
        state.h, state.c = h, c
        return y.permute(1, 2, 0) + x  # [B, C, T]

    def time_major(self, x: torch.Tensor) -> torch.Tensor:
        """Inference in time-major layout (:func:`lstm_time_major`): ``x`` and the result are [B, T, C]."""
        if x.shape[1] == 0:
            return x
        state = self.get_state(x)
        if state.weights is None:
            state.weights = lstm_weights(self.lstm)
        y, h, c = lstm_time_major(x, state.weights, state.h, state.c)
        state.h, state.c = h, c
        return y.add_(x)
