"""Codebook interleaving patterns: how ``[n_q, F]`` codes become token streams for a language model.

Every pattern maps codes to ids of one shared :class:`Vocabulary`, in which
codebook ``k`` owns the ids ``k * codebook_size .. (k + 1) * codebook_size - 1``
and the special tokens (pad, bos, eos) come after all code ids. Each pattern
has an exact inverse. For codes ``c[k, t]`` with ``n_q = 3``::

    parallel  [n_q, F]            c0,0 c0,1 c0,2 ...        one row per codebook
                                  c1,0 c1,1 c1,2 ...
                                  c2,0 c2,1 c2,2 ...

    flatten   [F * n_q]           c0,0 c1,0 c2,0 c0,1 c1,1 c2,1 ...    frame-major

    delay     [n_q, F + n_q - 1]  c0,0 c0,1 c0,2 ... pad  pad          codebook k shifted right
                                  pad  c1,0 c1,1 ... c1,F-1 pad        by k steps (MusicGen,
                                  pad  pad  c2,0 ... c2,F-2 c2,F-1     arXiv 2306.05284)

    coarse    [F]                 c0,0 c0,1 c0,2 ...                   AudioLM (arXiv 2209.03143):
    fine      [F * (n_q - 1)]     c1,0 c2,0 c1,1 c2,1 ...              the first codebook alone, then
                                                                       the rest frame-major

Every function takes leading batch axes: codes ``[..., n_q, F]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from codec.errors import InputError


@dataclass(frozen=True)
class Vocabulary:
    """Token ids of ``n_q`` codebooks of ``codebook_size`` codes plus three special tokens.

    Attributes:
        n_q: Codebooks.
        codebook_size: Codes per codebook.
    """

    n_q: int
    codebook_size: int

    def __post_init__(self) -> None:
        if self.n_q < 1 or self.codebook_size < 1:
            raise InputError(
                f"a vocabulary needs n_q >= 1 and codebook_size >= 1, got {self.n_q}, {self.codebook_size}"
            )

    @property
    def n_codes(self) -> int:
        """Ids taken by codes: ``n_q * codebook_size``."""
        return self.n_q * self.codebook_size

    @property
    def pad_id(self) -> int:
        """Fills the empty steps of the delay pattern."""
        return self.n_codes

    @property
    def bos_id(self) -> int:
        """Beginning of a sequence."""
        return self.n_codes + 1

    @property
    def eos_id(self) -> int:
        """End of a sequence."""
        return self.n_codes + 2

    @property
    def size(self) -> int:
        """All ids, codes and special tokens: the embedding table size."""
        return self.n_codes + 3

    def offsets(self, n_q: int | None = None) -> Tensor:
        """First id of each of the first ``n_q`` codebooks, ``[n_q, 1]``."""
        return torch.arange(self.n_q if n_q is None else n_q)[:, None] * self.codebook_size


def to_ids(codes: Tensor, vocab: Vocabulary) -> Tensor:
    """Adds each codebook's offset: codes ``[..., n_q, F]`` to ids of the same shape.

    Raises:
        InputError: If the codes are not integers in ``0..codebook_size - 1``
            or have more codebooks than the vocabulary.
    """
    _check_codes(codes, vocab)
    return codes.long() + vocab.offsets(codes.shape[-2]).to(codes.device)


def from_ids(ids: Tensor, vocab: Vocabulary) -> Tensor:
    """Inverse of :func:`to_ids`: ids ``[..., n_q, F]`` to codes (int64).

    Raises:
        InputError: If an id does not belong to its row's codebook.
    """
    if ids.dim() < 2 or ids.shape[-2] > vocab.n_q:
        raise InputError(f"expected ids shaped [..., n_q <= {vocab.n_q}, F], got {tuple(ids.shape)}")
    codes = ids.long() - vocab.offsets(ids.shape[-2]).to(ids.device)
    if codes.numel() and (codes.min() < 0 or codes.max() >= vocab.codebook_size):
        raise InputError(
            "ids do not belong to their codebook's range; were they made with this vocabulary and pattern?"
        )
    return codes


def parallel(codes: Tensor, vocab: Vocabulary) -> Tensor:
    """Parallel pattern: one stream per codebook, ids ``[..., n_q, F]``."""
    return to_ids(codes, vocab)


def unparallel(ids: Tensor, vocab: Vocabulary) -> Tensor:
    """Inverse of :func:`parallel`: codes ``[..., n_q, F]``."""
    return from_ids(ids, vocab)


def flatten(codes: Tensor, vocab: Vocabulary) -> Tensor:
    """Flatten pattern: all codebooks in one frame-major stream, ``[..., F * n_q]``."""
    ids = to_ids(codes, vocab)
    return ids.transpose(-1, -2).reshape(*ids.shape[:-2], -1)  # [..., F, n_q] -> [..., F * n_q]


def unflatten(ids: Tensor, vocab: Vocabulary, n_q: int) -> Tensor:
    """Inverse of :func:`flatten`: a stream ``[..., F * n_q]`` to codes ``[..., n_q, F]``.

    Raises:
        InputError: If the stream length is not a multiple of ``n_q``.
    """
    if ids.dim() < 1 or ids.shape[-1] % n_q:
        raise InputError(
            f"a flattened stream of {n_q} codebooks must have a multiple of {n_q} ids, got {tuple(ids.shape)}"
        )
    frames = ids.reshape(*ids.shape[:-1], -1, n_q)  # [..., F, n_q]
    return from_ids(frames.transpose(-1, -2), vocab)


def delay(codes: Tensor, vocab: Vocabulary) -> Tensor:
    """Delay pattern: codebook ``k`` shifted right by ``k`` steps, ``[..., n_q, F + n_q - 1]``, pad elsewhere."""
    ids = to_ids(codes, vocab)
    n_q, frames = ids.shape[-2:]
    out = ids.new_full((*ids.shape[:-1], frames + n_q - 1), vocab.pad_id)
    for k in range(n_q):
        out[..., k, k : k + frames] = ids[..., k, :]
    return out


def undelay(ids: Tensor, vocab: Vocabulary) -> Tensor:
    """Inverse of :func:`delay`: ``[..., n_q, F + n_q - 1]`` to codes ``[..., n_q, F]``.

    Raises:
        InputError: If the stream is too short or the pad positions hold other ids.
    """
    if ids.dim() < 2 or ids.shape[-1] < ids.shape[-2]:
        raise InputError(f"a delayed stream needs at least n_q steps per row, got {tuple(ids.shape)}")
    n_q, steps = ids.shape[-2:]
    frames = steps - n_q + 1
    rows = [ids[..., k, k : k + frames] for k in range(n_q)]
    pads = torch.ones(n_q, steps, dtype=torch.bool, device=ids.device)
    for k in range(n_q):
        pads[k, k : k + frames] = False
    if (ids[..., pads] != vocab.pad_id).any():
        raise InputError(f"a delayed stream must hold the pad id {vocab.pad_id} outside its shifted codes")
    return from_ids(torch.stack(rows, dim=-2), vocab)


def split_coarse_fine(codes: Tensor, vocab: Vocabulary) -> tuple[Tensor, Tensor]:
    """Coarse/fine split: the first codebook ``[..., F]`` and the rest frame-major ``[..., F * (n_q - 1)]``.

    Raises:
        InputError: If the codes have fewer than two codebooks.
    """
    if codes.dim() < 2 or codes.shape[-2] < 2:
        raise InputError(f"a coarse/fine split needs at least 2 codebooks, got codes {tuple(codes.shape)}")
    ids = to_ids(codes, vocab)
    coarse = ids[..., 0, :]
    fine = ids[..., 1:, :].transpose(-1, -2).reshape(*ids.shape[:-2], -1)  # [..., F, n_q - 1] -> [..., F * (n_q - 1)]
    return coarse, fine


def join_coarse_fine(coarse: Tensor, fine: Tensor, vocab: Vocabulary) -> Tensor:
    """Inverse of :func:`split_coarse_fine`: codes ``[..., n_q, F]``.

    Raises:
        InputError: If the fine stream does not hold a whole number of codebooks per coarse frame.
    """
    frames = coarse.shape[-1]
    if fine.shape[:-1] != coarse.shape[:-1] or frames == 0 or fine.shape[-1] % frames:
        raise InputError(
            f"the fine stream {tuple(fine.shape)} must hold a whole number of codebooks for each of the "
            f"{frames} coarse frames {tuple(coarse.shape)}"
        )
    n_fine = fine.shape[-1] // frames
    rest = fine.reshape(*fine.shape[:-1], frames, n_fine).transpose(-1, -2)  # [..., n_q - 1, F]
    ids = torch.cat([coarse.unsqueeze(-2), rest], dim=-2)  # [..., n_q, F]
    return from_ids(ids, vocab)


def add_special(stream: Tensor, vocab: Vocabulary) -> Tensor:
    """Puts bos before and eos after the last axis of ``stream`` ``[..., L]`` -> ``[..., L + 2]``."""
    bos = stream.new_full((*stream.shape[:-1], 1), vocab.bos_id)
    eos = stream.new_full((*stream.shape[:-1], 1), vocab.eos_id)
    return torch.cat([bos, stream, eos], dim=-1)


def strip_special(stream: Tensor, vocab: Vocabulary) -> Tensor:
    """Inverse of :func:`add_special`.

    Raises:
        InputError: If the stream does not start with bos and end with eos.
    """
    if stream.shape[-1] < 2 or (stream[..., 0] != vocab.bos_id).any() or (stream[..., -1] != vocab.eos_id).any():
        raise InputError(f"expected a stream framed by bos {vocab.bos_id} and eos {vocab.eos_id}")
    return stream[..., 1:-1]


def _check_codes(codes: Tensor, vocab: Vocabulary) -> None:
    if not isinstance(codes, Tensor) or codes.dim() < 2:
        raise InputError(f"expected codes shaped [..., n_q, F], got {getattr(codes, 'shape', type(codes).__name__)}")
    if codes.is_floating_point():
        raise InputError(f"codes must be integers, got {codes.dtype}")
    if codes.shape[-2] > vocab.n_q:
        raise InputError(f"codes have {codes.shape[-2]} codebooks but the vocabulary only {vocab.n_q}")
    if codes.numel() and (codes.min() < 0 or codes.max() >= vocab.codebook_size):
        raise InputError(f"codes must lie in 0..{vocab.codebook_size - 1}")
