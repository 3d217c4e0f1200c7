"""Entropy coding of codes: integer tables, ANS round trips, determinism, bit-packing."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from codec.errors import ConfigError, FormatError
from codec.fileformat import entropy
from codec.fileformat.entropy import EntropyTables, fit_counts, pack_bits, quantize_counts, unpack_bits
from codec.network.model import Codec


def _speech_codes(codec: Codec, speech: Callable[..., torch.Tensor], index: int = 0) -> torch.Tensor:
    """Codes ``[1, n_q, F]`` of a real speech clip."""
    return codec.encode(speech(codec.sample_rate, index=index)).codes


def _ideal_bits(tables: EntropyTables, k: int, symbols: np.ndarray) -> float:
    """Information content of ``symbols`` under codebook ``k``'s fixed-point model (``w + 1`` of 2**24)."""
    p = (tables.weights[k][symbols] + 1) / float(1 << entropy.PRECISION_BITS)
    return float(-np.log2(p).sum())


@pytest.mark.parametrize("counts", [[1, 1, 1], [5, 0, 0, 1], [10**9, 1, 3, 7, 0, 2], list(range(1, 1025))],
                         ids=["uniform3", "zeros", "skewed", "ramp1024"])
def test_quantized_weights_sum_exactly(counts: list[int]) -> None:
    counts_np = np.array([counts], dtype=np.int64)
    weights = quantize_counts(counts_np)
    size = len(counts)
    assert weights.dtype == np.int64 and (weights >= 0).all()
    assert weights.sum() == (1 << entropy.PRECISION_BITS) - size
    ideal = counts_np * ((1 << entropy.PRECISION_BITS) - size) / counts_np.sum()
    assert np.abs(weights - ideal).max() < 1.0  # largest remainder: each within one unit


def test_fit_counts_adds_one_to_every_code(fitted_codec: Codec, speech: Callable[..., torch.Tensor]) -> None:
    codes = _speech_codes(fitted_codec, speech)  # [1, n_q, F]
    config = fitted_codec.config
    counts = fit_counts([codes, codes[:, :2]], config.n_q, config.codebook_size)
    assert counts.shape == (config.n_q, config.codebook_size) and counts.min() >= 1
    frames = codes.shape[-1]
    expected = [config.codebook_size + frames * (2 if k < 2 else 1) for k in range(config.n_q)]
    assert counts.sum(axis=1).tolist() == expected
    assert counts[0, int(codes[0, 0, 0])] > 1


def test_ans_round_trip_costs_the_fixed_point_information(
    fitted_codec: Codec, speech: Callable[..., torch.Tensor]
) -> None:
    """The coder's model is exactly ``w + 1``: its output size is the ideal information plus a word or two."""
    codes = _speech_codes(fitted_codec, speech)
    config = fitted_codec.config
    tables = EntropyTables(fit_counts([codes], config.n_q, config.codebook_size))
    for k in range(config.n_q):
        symbols = codes[0, k].numpy()
        data = tables.encode(k, symbols)
        assert np.array_equal(tables.decode(k, data, symbols.size), symbols)
        ideal = _ideal_bits(tables, k, symbols)
        assert ideal <= len(data) * 8 <= ideal + 64


def test_fitted_tables_beat_uniform_on_held_out_speech(
    fitted_codec: Codec, speech: Callable[..., torch.Tensor]
) -> None:
    codes = _speech_codes(fitted_codec, speech)  # [1, n_q, F]
    half = codes.shape[-1] // 2
    config = fitted_codec.config
    fitted = EntropyTables(fit_counts([codes[..., :half]], config.n_q, config.codebook_size))
    uniform = EntropyTables.uniform(config.n_q, config.codebook_size)
    held_out = codes[0, :, half:].numpy()  # [n_q, F / 2]
    fitted_bytes = sum(len(fitted.encode(k, held_out[k])) for k in range(config.n_q))
    uniform_bytes = sum(len(uniform.encode(k, held_out[k])) for k in range(config.n_q))
    assert uniform_bytes * 8 == pytest.approx(held_out.size * np.log2(config.codebook_size), abs=64 * config.n_q)
    assert fitted_bytes < uniform_bytes


def test_output_bytes_are_fixed() -> None:
    """Golden output: the same tables and symbols give these exact bytes on every machine and release."""
    size = 1024
    counts = np.array([[1 + (i * 37) % 101 + (5000 if i % 97 == 0 else 0) for i in range(size)]], dtype=np.int64)
    symbols = np.array([(i * i * 7 + 3 * i) % size for i in range(5000)], dtype=np.int64)
    tables = EntropyTables(counts)
    data = tables.encode(0, symbols)
    assert np.array_equal(tables.decode(0, data, symbols.size), symbols)
    assert tables.digest == "a1d8f6ffdd3a6ac1"
    assert hashlib.sha256(data).hexdigest()[:16] == "633570a2c30990d2"


def test_digest_follows_the_fixed_point_tables() -> None:
    base = np.arange(1, 65, dtype=np.int64)[None].repeat(2, axis=0)
    assert EntropyTables(base).digest == EntropyTables(base * 3).digest  # same quantized model
    changed = base.copy()
    changed[1, 5] += 40
    assert EntropyTables(base).digest != EntropyTables(changed).digest


def test_save_load_round_trip(tmp_path: Path, fitted_codec: Codec, speech: Callable[..., torch.Tensor]) -> None:
    config = fitted_codec.config
    tables = EntropyTables(fit_counts([_speech_codes(fitted_codec, speech)], config.n_q, config.codebook_size))
    assert EntropyTables.load(tmp_path, config.n_q, config.codebook_size).digest == (
        EntropyTables.uniform(config.n_q, config.codebook_size).digest
    )
    tables.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [entropy.TABLES_FILE]
    loaded = EntropyTables.load(tmp_path, config.n_q, config.codebook_size)
    assert np.array_equal(loaded.counts, tables.counts) and loaded.digest == tables.digest
    with pytest.raises(ConfigError, match="model has 8 x 64"):
        EntropyTables.load(tmp_path, 8, config.codebook_size)
    (tmp_path / entropy.TABLES_FILE).write_bytes(b"not safetensors")
    with pytest.raises(ConfigError, match="cannot read entropy tables"):
        EntropyTables.load(tmp_path, config.n_q, config.codebook_size)


@pytest.mark.parametrize("counts", [np.ones((2, 1), np.int64), -np.ones((1, 4), np.int64),
                                    np.zeros((1, 4), np.int64), np.ones((1, 4)) * 0.5],
                         ids=["one-code", "negative", "all-zero", "float"])
def test_bad_tables_are_refused(counts: np.ndarray) -> None:
    with pytest.raises(ConfigError):
        EntropyTables(counts)


def test_ans_blocks_drop_the_zero_high_bytes_of_their_last_word() -> None:
    tables = EntropyTables.uniform(1, 64)
    lengths = set()
    for count in range(1, 40):
        symbols = (np.arange(count) * 7) % 64
        data = tables.encode(0, symbols)
        assert not data or data[-1] != 0  # (one symbol 0 codes to nothing at all)
        lengths.add(len(data) % 4)
        assert np.array_equal(tables.decode(0, data, count), symbols)
    assert len(lengths) > 1  # not always whole words


def test_corrupt_ans_blocks_raise_format_error() -> None:
    tables = EntropyTables.uniform(1, 64)
    symbols = np.arange(64) % 64
    data = tables.encode(0, symbols)
    with pytest.raises(FormatError, match="more data than its symbols"):
        tables.decode(0, data + data, symbols.size)
    with pytest.raises(FormatError, match="corrupt"):
        tables.decode(0, data[: -(len(data) % 4 or 4)] + b"\0", symbols.size)


@pytest.mark.parametrize("bits", [1, 6, 10, 16])
def test_bit_packing_round_trip(bits: int) -> None:
    rng = np.random.default_rng(bits)
    for count in (1, 7, 1001):
        symbols = rng.integers(0, 1 << bits, size=count)
        data = pack_bits(symbols, bits)
        assert len(data) == (count * bits + 7) // 8
        assert np.array_equal(unpack_bits(data, count, bits), symbols)
    with pytest.raises(FormatError, match="expected"):
        unpack_bits(data + b"\0", count, bits)


def test_ten_bit_codes_pack_to_ten_bits_each() -> None:
    assert entropy.bits_for(1024) == 10 and entropy.bits_for(1000) == 10 and entropy.bits_for(2) == 1
    codes = np.array([[[1023, 0, 512, 1]]])  # [C, n_q, F]
    blocks = entropy.encode_codes(codes, None, 1024)
    assert blocks == [bytes([0b11111111, 0b11000000, 0b00001000, 0b00000000, 0b00000001])]
    assert np.array_equal(entropy.decode_codes(blocks, 1, 4, None, 1024), codes)
    with pytest.raises(FormatError, match="codebook 0: a code exceeds"):
        entropy.decode_codes(entropy.encode_codes(codes, None, 1024), 1, 4, None, 1000)
