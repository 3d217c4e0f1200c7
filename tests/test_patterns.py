"""Codebook patterns: each pattern followed by its inverse gives back the codes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from codec.errors import InputError
from codec.tokens import patterns
from codec.tokens.patterns import Vocabulary


@st.composite
def codes_and_vocab(draw: st.DrawFn, min_n_q: int = 1) -> tuple[torch.Tensor, Vocabulary]:
    """Random codes ``[*batch, n_q, F]`` and a vocabulary with at least ``n_q`` codebooks."""
    n_q = draw(st.integers(min_n_q, 8))
    vocab = Vocabulary(n_q=draw(st.integers(n_q, 10)), codebook_size=draw(st.integers(1, 1024)))
    frames = draw(st.integers(1, 40))
    batch = draw(st.lists(st.integers(1, 3), max_size=2))
    seed = draw(st.integers(0, 2**31 - 1))
    generator = torch.Generator().manual_seed(seed)
    codes = torch.randint(vocab.codebook_size, (*batch, n_q, frames), generator=generator)
    return codes, vocab


def _assert_ids_in_range(ids: torch.Tensor, vocab: Vocabulary) -> None:
    assert ids.dtype == torch.long
    assert ids.min() >= 0 and ids.max() < vocab.size


@settings(max_examples=200, deadline=None)
@given(codes_and_vocab())
def test_parallel_roundtrip(case: tuple[torch.Tensor, Vocabulary]) -> None:
    codes, vocab = case
    ids = patterns.parallel(codes, vocab)
    assert ids.shape == codes.shape
    _assert_ids_in_range(ids, vocab)
    assert torch.equal(patterns.unparallel(ids, vocab), codes)


@settings(max_examples=200, deadline=None)
@given(codes_and_vocab())
def test_flatten_roundtrip(case: tuple[torch.Tensor, Vocabulary]) -> None:
    codes, vocab = case
    n_q, frames = codes.shape[-2:]
    ids = patterns.flatten(codes, vocab)
    assert ids.shape == (*codes.shape[:-2], frames * n_q)
    _assert_ids_in_range(ids, vocab)
    assert torch.equal(patterns.unflatten(ids, vocab, n_q), codes)


@settings(max_examples=200, deadline=None)
@given(codes_and_vocab())
def test_delay_roundtrip(case: tuple[torch.Tensor, Vocabulary]) -> None:
    codes, vocab = case
    n_q, frames = codes.shape[-2:]
    ids = patterns.delay(codes, vocab)
    assert ids.shape == (*codes.shape[:-2], n_q, frames + n_q - 1)
    _assert_ids_in_range(ids, vocab)
    assert (ids == vocab.pad_id).sum() == codes[..., 0, 0].numel() * n_q * (n_q - 1)
    assert torch.equal(patterns.undelay(ids, vocab), codes)


@settings(max_examples=200, deadline=None)
@given(codes_and_vocab(min_n_q=2))
def test_coarse_fine_roundtrip(case: tuple[torch.Tensor, Vocabulary]) -> None:
    codes, vocab = case
    n_q, frames = codes.shape[-2:]
    coarse, fine = patterns.split_coarse_fine(codes, vocab)
    assert coarse.shape == (*codes.shape[:-2], frames)
    assert fine.shape == (*codes.shape[:-2], frames * (n_q - 1))
    assert (coarse < vocab.codebook_size).all() and (fine >= vocab.codebook_size).all()
    assert torch.equal(patterns.join_coarse_fine(coarse, fine, vocab), codes)


@settings(max_examples=100, deadline=None)
@given(codes_and_vocab())
def test_special_tokens_roundtrip(case: tuple[torch.Tensor, Vocabulary]) -> None:
    codes, vocab = case
    stream = patterns.flatten(codes, vocab)
    framed = patterns.add_special(stream, vocab)
    assert (framed[..., 0] == vocab.bos_id).all() and (framed[..., -1] == vocab.eos_id).all()
    assert torch.equal(patterns.strip_special(framed, vocab), stream)


def test_vocabulary_layout() -> None:
    vocab = Vocabulary(n_q=8, codebook_size=1024)
    assert (vocab.pad_id, vocab.bos_id, vocab.eos_id, vocab.size) == (8192, 8193, 8194, 8195)
    codes = torch.tensor([[5], [5], [5]])  # [n_q=3, F=1]
    assert patterns.flatten(codes, vocab).tolist() == [5, 1029, 2053]


def test_delay_places_codebook_k_k_steps_later() -> None:
    vocab = Vocabulary(n_q=3, codebook_size=10)
    codes = torch.tensor([[1, 2], [3, 4], [5, 6]])
    p = vocab.pad_id
    assert patterns.delay(codes, vocab).tolist() == [[1, 2, p, p], [p, 13, 14, p], [p, p, 25, 26]]


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda v: patterns.flatten(torch.tensor([[10]]), v), id="code-out-of-range"),
        pytest.param(lambda v: patterns.flatten(torch.zeros(5, 2, dtype=torch.long), v), id="too-many-codebooks"),
        pytest.param(lambda v: patterns.unflatten(torch.zeros(5, dtype=torch.long), v, 2), id="ragged-stream"),
        pytest.param(lambda v: patterns.undelay(torch.zeros(2, 3, dtype=torch.long), v), id="delay-without-pads"),
        pytest.param(lambda v: patterns.unparallel(torch.tensor([[0], [3]]), v), id="id-in-wrong-codebook"),
        pytest.param(lambda v: patterns.split_coarse_fine(torch.zeros(1, 4, dtype=torch.long), v), id="one-codebook"),
        pytest.param(lambda v: patterns.strip_special(torch.tensor([1, 2]), v), id="no-bos"),
    ],
)
def test_bad_inputs_raise_input_error(call: Callable[[Vocabulary], object]) -> None:
    with pytest.raises(InputError):
        call(Vocabulary(n_q=4, codebook_size=10))
