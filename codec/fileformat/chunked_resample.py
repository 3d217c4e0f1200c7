"""Resampling a long signal block by block with the output of resampling it whole.

:func:`codec.audio.resample` (torchaudio's windowed-sinc resampler) reduces
the two rates by their gcd to ``orig`` and ``new`` and computes each group
``t`` of ``new`` output samples from the input samples
``[t * orig - width, t * orig + orig + width)``, zero outside the signal, with
``width = ceil(6 * orig / (0.99 * min(orig, new)))`` for torchaudio's
defaults (6 zero crossings, roll-off 0.99). So a block of whole groups can be
resampled on its own, given ``context`` input samples on either side::

    input    |-context-|====== groups next .. end ======|-context-|
    output             |========== kept ===============|

and the kept outputs equal those of resampling the whole signal (up to the
float rounding of the convolution). Memory stays proportional to the block
size, whatever the length of the signal.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from codec.audio import resample
from codec.errors import InputError

#: torchaudio's default ``lowpass_filter_width`` and ``rolloff``, which codec.audio.resample uses.
_ZERO_CROSSINGS = 6
_ROLLOFF = 0.99
#: Largest filter bank accepted (``new * (2 * width + orig)`` floats, 64 MB). Common rate pairs
#: need far less (44.1 <-> 16 kHz: 76k); nearly coprime ones (44101 -> 16000 Hz: 700M) would
#: exhaust memory inside torchaudio.
MAX_KERNEL_SIZE = 1 << 24


class ChunkedResampler:
    """Resamples consecutive blocks ``[C, n]`` of one signal from ``orig_rate`` to ``target_rate``.

    The outputs of :meth:`process` followed by :meth:`flush`, concatenated,
    hold ``ceil(total_input * target_rate / orig_rate)`` samples, like
    :func:`codec.audio.resample` on the whole signal.

    Args:
        orig_rate: Input sample rate in Hz.
        target_rate: Output sample rate in Hz.
        channels: Channels ``C`` of every block.
    """

    def __init__(self, orig_rate: int, target_rate: int, channels: int) -> None:
        self.orig_rate, self.target_rate = orig_rate, target_rate
        gcd = math.gcd(orig_rate, target_rate)
        self._orig, self._new = orig_rate // gcd, target_rate // gcd
        width = math.ceil(_ZERO_CROSSINGS * self._orig / (_ROLLOFF * min(self._orig, self._new)))
        if orig_rate != target_rate and self._new * (2 * width + self._orig) > MAX_KERNEL_SIZE:
            raise InputError(
                f"cannot resample {orig_rate} Hz to {target_rate} Hz: the ratio {self._orig}:{self._new} is too "
                "fine for the windowed-sinc resampler; convert the audio to a common rate first (e.g. with sox)"
            )
        self._context = self._orig * (math.ceil((width + self._orig) / self._orig) + 1)  # whole groups
        self._buffer = torch.zeros(channels, self._context)  # [C, L], input from index self._start
        self._start = -self._context
        self._next_group = 0
        self._received = 0
        self._emitted = 0

    @property
    def passthrough(self) -> bool:
        """Whether the rates are equal (blocks pass unchanged)."""
        return self.orig_rate == self.target_rate

    def process(self, block: Tensor) -> Tensor:
        """Takes the next input block ``[C, n]``; returns the output ready so far ``[C, m]``."""
        self._received += block.shape[-1]
        if self.passthrough:
            self._emitted += block.shape[-1]
            return block
        self._buffer = torch.cat([self._buffer, block.to(self._buffer.dtype)], dim=-1)
        return self._emit()

    def flush(self) -> Tensor:
        """Ends the signal; returns the remaining output ``[C, m]``."""
        total = -(-self._received * self._new // self._orig)  # exact integer ceil
        if self.passthrough:
            return self._buffer[:, :0]
        tail = torch.zeros(self._buffer.shape[0], self._context + self._orig)
        self._buffer = torch.cat([self._buffer, tail], dim=-1)
        out = self._emit()
        return out[:, : max(0, total - (self._emitted - out.shape[-1]))]

    def _emit(self) -> Tensor:
        """Resamples every group whose right context has arrived: [C, groups * new]."""
        end = self._start + self._buffer.shape[-1]
        last = (end - self._context) // self._orig  # groups next .. last - 1 are complete
        if last <= self._next_group:
            return self._buffer[:, :0]
        hi = last * self._orig + self._context - self._start
        y = resample(self._buffer[:, :hi], self.orig_rate, self.target_rate)  # [C, hi / orig * new]
        skip = self._context // self._orig * self._new
        out = y[:, skip : skip + (last - self._next_group) * self._new]
        keep_from = last * self._orig - self._context
        self._buffer = self._buffer[:, keep_from - self._start :]
        self._start, self._next_group = keep_from, last
        self._emitted += out.shape[-1]
        return out
