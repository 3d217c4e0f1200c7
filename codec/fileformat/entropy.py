"""Lossless coding of codes: per-codebook frequency tables, ANS coding, bit-packing.

Each codebook ``k`` of a model has a table of integer counts ``[n_q, K]``
(``K`` = codebook size) fitted on the codes of a dataset with add-one
smoothing (:func:`fit_counts`) and stored beside the weights as
``entropy.safetensors``; a model without that file uses uniform tables. The
symbols of one codebook are coded with constriction's ANS coder
(``constriction.stream.stack.AnsCoder``) under a categorical model of that
codebook's table. Without entropy coding, codes are bit-packed at
``ceil(log2 K)`` bits each (:func:`pack_bits`).

Bit-exact decoding on every machine
-----------------------------------
constriction's ``Categorical(p, perfect=False)`` turns float probabilities
into a 24-bit fixed-point model (``PRECISION_BITS``) as follows: with
``free = 2**24 - K`` and ``S = sum(p)`` (summed left to right), the left
cumulative of symbol ``i`` is ``floor(cumsum(p)[i] * (free / S)) + i``.
Our tables never give it floats to round: counts are first quantized here,
in integer arithmetic, to weights ``w`` with ``sum(w) == free`` exactly
(:func:`quantize_counts`), and ``w`` is passed as float64. Every ``w_i`` and
every partial sum is an integer below ``2**53``, so each one is exact in
float64, ``free / S`` is exactly ``1.0`` and each product and ``floor`` is
exact. The coder's fixed-point probability of symbol ``i`` is therefore the
integer ``w_i + 1`` (out of ``2**24``) on any IEEE-754 machine, whatever the
rounding of the platform's other float operations; no floating point result
of ours or of constriction's is ever rounded on the coder's path. The digest
recorded in compressed files (:attr:`EntropyTables.digest`) is taken over
these fixed-point frequencies, so a decoder with other tables refuses a file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import constriction
import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from codec.atomic import atomic_write
from codec.errors import ConfigError, FormatError

if TYPE_CHECKING:  # the decoding path needs no torch
    from torch import Tensor

#: Fixed-point precision of constriction's default categorical model (``2**24`` total weight).
PRECISION_BITS = 24
#: File holding the counts ``[n_q, K]`` beside a model's weights.
TABLES_FILE = "entropy.safetensors"
#: Largest count accepted: keeps ``count * 2**24`` inside int64.
MAX_COUNT = 1 << 38


def fit_counts(code_batches: Iterable[Tensor], n_q: int, codebook_size: int) -> np.ndarray:
    """Counts each code of each codebook, with add-one smoothing.

    Args:
        code_batches: Code tensors ``[B, n, F]`` with ``n <= n_q`` (for
            example ``model.encode(wav).codes`` over a dataset). Codebooks a
            batch does not hold keep their counts.
        n_q: Codebooks of the model.
        codebook_size: Entries per codebook.

    Returns:
        Counts ``[n_q, codebook_size]`` (int64), every entry at least 1.
    """
    import torch

    counts = np.ones((n_q, codebook_size), dtype=np.int64)
    for codes in code_batches:
        codes = torch.as_tensor(codes)
        if codes.dim() != 3 or codes.shape[1] > n_q:
            raise ConfigError(f"expected codes shaped [B, n <= {n_q}, F], got {tuple(codes.shape)}")
        for k in range(codes.shape[1]):
            flat = codes[:, k].reshape(-1).cpu().numpy()
            counts[k] += np.bincount(flat, minlength=codebook_size)[:codebook_size]
    return counts


def quantize_counts(counts: np.ndarray) -> np.ndarray:
    """Integer weights ``w`` [n_q, K] with each row summing to ``2**24 - K``.

    Largest-remainder rounding of ``counts * (2**24 - K) / sum(counts)``, in
    integer arithmetic only; ties go to the lower symbol index. The coder's
    fixed-point frequencies are ``w + 1`` (see the module docstring).
    """
    counts = np.asarray(counts, dtype=np.int64)
    n_q, size = counts.shape
    free = (1 << PRECISION_BITS) - size
    totals = counts.sum(axis=1, keepdims=True)  # [n_q, 1]
    scaled = counts * free  # [n_q, K], below 2**62 by MAX_COUNT
    weights = scaled // totals
    remainders = scaled % totals
    missing = free - weights.sum(axis=1)  # [n_q], each in 0..K-1
    index = np.arange(size)
    for k in range(n_q):
        order = np.lexsort((index, -remainders[k]))  # largest remainder first, then lowest index
        weights[k, order[: missing[k]]] += 1
    return weights


class EntropyTables:
    """The per-codebook probability tables of a model and the coder built on them.

    Args:
        counts: Non-negative integer counts ``[n_q, K]``, each row with a
            positive sum, entries below :data:`MAX_COUNT`.

    Raises:
        ConfigError: On a table of the wrong shape, type or range.
    """

    def __init__(self, counts: np.ndarray) -> None:
        counts = np.asarray(counts)
        if counts.ndim != 2 or not np.issubdtype(counts.dtype, np.integer):
            raise ConfigError(f"entropy counts must be an integer table [n_q, K], got {counts.dtype} {counts.shape}")
        if not 2 <= counts.shape[1] < (1 << PRECISION_BITS) // 2:
            raise ConfigError(f"entropy coding needs 2 to {(1 << PRECISION_BITS) // 2 - 1} codes per codebook")
        if (counts < 0).any() or (counts >= MAX_COUNT).any() or (counts.sum(axis=1) == 0).any():
            raise ConfigError(f"entropy counts must lie in 0..{MAX_COUNT - 1} with a positive sum per codebook")
        self.counts = counts.astype(np.int64)
        self.weights = quantize_counts(self.counts)  # [n_q, K], rows sum to 2**24 - K
        self._models: dict[int, constriction.stream.model.Categorical] = {}

    @classmethod
    def uniform(cls, n_q: int, codebook_size: int) -> EntropyTables:
        """Tables giving every code of every codebook the same probability."""
        return cls(np.ones((n_q, codebook_size), dtype=np.int64))

    @classmethod
    def load(cls, directory: str | Path, n_q: int, codebook_size: int) -> EntropyTables:
        """Reads ``entropy.safetensors`` from a model directory (uniform tables if absent).

        Raises:
            ConfigError: If the file is unreadable or its table does not fit the model.
        """
        path = Path(directory) / TABLES_FILE
        if not path.is_file():
            return cls.uniform(n_q, codebook_size)
        try:
            counts = load_file(str(path))["counts"]
        except (OSError, KeyError, ValueError, SafetensorError) as e:
            raise ConfigError(f"{path}: cannot read entropy tables ({e}); refit them or delete the file") from None
        if counts.shape != (n_q, codebook_size):
            raise ConfigError(f"{path}: tables are {counts.shape} but the model has {n_q} x {codebook_size} codes")
        return cls(counts)

    def save(self, directory: str | Path) -> None:
        """Writes the counts to ``directory/entropy.safetensors`` atomically."""
        path = Path(directory) / TABLES_FILE
        atomic_write(path, lambda p: save_file({"counts": self.counts}, p))

    @property
    def n_q(self) -> int:
        """Codebooks covered."""
        return self.counts.shape[0]

    @property
    def codebook_size(self) -> int:
        """Codes per codebook."""
        return self.counts.shape[1]

    @property
    def digest(self) -> str:
        """First 16 hex digits of a SHA-256 over the fixed-point frequencies ``[n_q, K]``."""
        digest = hashlib.sha256(f"{PRECISION_BITS}:{self.n_q}x{self.codebook_size}:".encode())
        digest.update((self.weights + 1).astype("<i8").tobytes())
        return digest.hexdigest()[:16]

    def _model(self, k: int) -> constriction.stream.model.Categorical:
        if k not in self._models:
            probabilities = self.weights[k].astype(np.float64)  # exact: integers below 2**24
            self._models[k] = constriction.stream.model.Categorical(probabilities, perfect=False)
        return self._models[k]

    def encode(self, k: int, symbols: np.ndarray) -> bytes:
        """ANS-codes the symbols ``[N]`` of codebook ``k``.

        Returns:
            The coder's 32-bit words, little-endian, without the zero high
            bytes of the last word (which is never zero).
        """
        coder = constriction.stream.stack.AnsCoder()
        coder.encode_reverse(np.ascontiguousarray(symbols, dtype=np.int32), self._model(k))
        return coder.get_compressed().astype("<u4").tobytes().rstrip(b"\0")

    def decode(self, k: int, data: bytes, count: int) -> np.ndarray:
        """Decodes ``count`` symbols of codebook ``k`` from :meth:`encode` output.

        Raises:
            FormatError: If ``data`` is not a complete ANS stream of ``count`` symbols.
        """
        data = data + bytes(-len(data) % 4)  # restore the last word's high bytes
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        try:
            coder = constriction.stream.stack.AnsCoder(words)
            symbols = coder.decode(self._model(k), count)
        except ValueError as e:
            raise FormatError(f"corrupt entropy-coded block ({e})") from None
        if not coder.is_empty():
            raise FormatError("entropy-coded block holds more data than its symbols")
        return symbols.astype(np.int64)


def bits_for(codebook_size: int) -> int:
    """Bits of one bit-packed code: ``ceil(log2(codebook_size))``, at least 1."""
    return max(1, (codebook_size - 1).bit_length())


def pack_bits(symbols: np.ndarray, bits: int) -> bytes:
    """Packs non-negative integers ``[N]`` below ``2**bits`` at ``bits`` bits each, MSB first."""
    symbols = np.asarray(symbols, dtype=np.uint32)
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint32)  # [bits]
    planes = ((symbols[:, None] >> shifts) & 1).astype(np.uint8)  # [N, bits]
    return np.packbits(planes.reshape(-1)).tobytes()


def unpack_bits(data: bytes, count: int, bits: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``count`` integers ``[N]`` (int64).

    Raises:
        FormatError: If ``data`` is not exactly ``ceil(count * bits / 8)`` bytes.
    """
    expected = (count * bits + 7) // 8
    if len(data) != expected:
        raise FormatError(f"bit-packed block has {len(data)} bytes, expected {expected}")
    planes = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=count * bits)  # [N * bits]
    weights = 1 << np.arange(bits - 1, -1, -1, dtype=np.int64)  # [bits]
    return planes.reshape(count, bits).astype(np.int64) @ weights


def encode_codes(codes: np.ndarray, tables: EntropyTables | None, codebook_size: int) -> list[bytes]:
    """Codes ``[C, n_q, F]`` to one block per codebook (ANS with ``tables``, else bit-packed).

    Block ``k`` holds codebook ``k`` of every channel, channel-major then time.
    """
    blocks = []
    for k in range(codes.shape[1]):
        symbols = codes[:, k, :].reshape(-1)  # [C * F]
        blocks.append(tables.encode(k, symbols) if tables is not None else pack_bits(symbols, bits_for(codebook_size)))
    return blocks


def decode_codes(
    blocks: list[bytes], channels: int, frames: int, tables: EntropyTables | None, codebook_size: int
) -> np.ndarray:
    """Inverse of :func:`encode_codes`: codes ``[C, n_q, F]`` (int64).

    Raises:
        FormatError: Naming the codebook whose block is corrupt.
    """
    codes = np.empty((channels, len(blocks), frames), dtype=np.int64)
    for k, block in enumerate(blocks):
        count = channels * frames
        try:
            if tables is not None:
                symbols = tables.decode(k, block, count)
            else:
                symbols = unpack_bits(block, count, bits_for(codebook_size))
        except FormatError as e:
            raise FormatError(f"codebook {k}: {e}") from None
        if symbols.size and symbols.max() >= codebook_size:
            raise FormatError(f"codebook {k}: a code exceeds the codebook size {codebook_size}")
        codes[:, k, :] = symbols.reshape(channels, frames)
    return codes
