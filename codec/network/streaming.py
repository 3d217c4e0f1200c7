"""Streaming state for causal layers.

Each causal layer keeps a small dataclass of what it needs from the past: a
convolution keeps its last input samples, a transposed convolution the part of
its output that still overlaps the next frame, an LSTM its ``h`` and ``c``.
An offline call runs the very same code with a fresh (all-zero) state that is
thrown away afterwards; inside ``with module.streaming(batch_size):`` the state
is kept between calls, so feeding a signal chunk by chunk gives the same output
as feeding it whole.

    codec = Codec(config)
    with codec.streaming(batch_size=1):
        for chunk in chunks:            # [1, C, k * hop] each
            codes = codec.encode(chunk).codes
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import ClassVar, Generic, TypeVar

import torch
from torch import nn

from codec.errors import InputError

State = TypeVar("State")


class StreamingModule(nn.Module, Generic[State]):
    """A module whose forward can carry a state from one call to the next.

    Subclasses implement :meth:`init_state` (the state before any input) and
    call :meth:`get_state` in their forward, then update that state in place
    (offline it is a fresh one, thrown away) or store a new one with
    :meth:`set_state`. :attr:`carried` names the fields of the state that
    hold the signal's past (the rest are weights cached for the stream): an
    exported one-frame step (:mod:`codec.frame_step`) takes and returns them
    as tensors.
    """

    carried: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        super().__init__()
        self._streaming: bool = False
        self._batch_size: int = 0
        self._state: State | None = None

    def init_state(self, x: torch.Tensor) -> State:
        """Returns the state before any input, shaped for the batch of ``x``."""
        raise NotImplementedError(f"{type(self).__name__} must define init_state")

    def get_state(self, x: torch.Tensor) -> State:
        """The current state: the stored one when streaming, else a fresh one."""
        if self._streaming:
            if x.shape[0] != self._batch_size:
                raise InputError(
                    f"streaming was started for batch size {self._batch_size}, "
                    f"but a chunk has batch size {x.shape[0]}"
                )
            if self._state is None:
                self._state = self.init_state(x)
            return self._state
        return self.init_state(x)

    def set_state(self, state: State) -> None:
        """Stores ``state`` for the next call when streaming; no-op offline."""
        if self._streaming:
            self._state = state

    @property
    def is_streaming(self) -> bool:
        """Whether a ``streaming()`` context is active on this module."""
        return self._streaming


def kept(view: torch.Tensor, whole: torch.Tensor) -> torch.Tensor:
    """``view`` (a slice of ``whole``) as carried state: a copy when it is under half of ``whole``, so that a
    long chunk's buffer is freed; the view itself otherwise, so that one-frame streaming allocates nothing."""
    return view.clone() if 2 * view.numel() < whole.numel() else view


def streaming_modules(module: nn.Module) -> Iterator[StreamingModule]:
    """All :class:`StreamingModule` instances inside ``module`` (itself included)."""
    for m in module.modules():
        if isinstance(m, StreamingModule):
            yield m


@contextlib.contextmanager
def streaming(module: nn.Module, batch_size: int) -> Iterator[None]:
    """Keeps the state of every streaming layer of ``module`` across calls.

    Args:
        module: Any module containing streaming layers.
        batch_size: Batch size of every chunk fed inside the context.

    Raises:
        InputError: If streaming is already active on ``module``.
    """
    layers = list(streaming_modules(module))
    if any(m._streaming for m in layers):
        raise InputError("streaming is already active on this module; leave the first context first")
    for m in layers:
        m._streaming, m._batch_size, m._state = True, batch_size, None
    try:
        yield
    finally:
        for m in layers:
            m._streaming, m._batch_size, m._state = False, 0, None
