"""Causal streaming layers: output lengths, prefix causality, chunked == offline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from conftest import chunks
from torch.nn import functional as F

from codec.errors import InputError
from codec.network.layers import StreamingConv1d, StreamingConvTranspose1d, StreamingLSTM
from codec.network.streaming import StreamingModule, streaming

BATCH = 2


@dataclass
class LayerCase:
    """A layer and its rate: ``in_step`` input steps give ``out_step`` output steps."""

    build: Callable[[], StreamingModule]
    in_channels: int
    in_step: int
    out_step: int


CASES = {
    "conv-k7": LayerCase(lambda: StreamingConv1d(3, 5, 7), 3, 1, 1),
    "conv-k1": LayerCase(lambda: StreamingConv1d(3, 5, 1), 3, 1, 1),
    "conv-k4-stride2": LayerCase(lambda: StreamingConv1d(3, 5, 4, stride=2), 3, 2, 1),
    "conv-k10-stride5": LayerCase(lambda: StreamingConv1d(3, 4, 10, stride=5), 3, 5, 1),
    "conv-k3-dilation3": LayerCase(lambda: StreamingConv1d(3, 5, 3, dilation=3), 3, 1, 1),
    "conv-k3-stride2-dilation2": LayerCase(lambda: StreamingConv1d(3, 5, 3, stride=2, dilation=2), 3, 2, 1),
    "conv-k7-depthwise": LayerCase(lambda: StreamingConv1d(4, 4, 7, groups=4), 4, 1, 1),
    "conv-k3-depthwise-dilation2": LayerCase(lambda: StreamingConv1d(4, 4, 3, dilation=2, groups=4), 4, 1, 1),
    "conv-k3-grouped": LayerCase(lambda: StreamingConv1d(4, 6, 3, groups=2), 4, 1, 1),
    "convtr-k4-stride2": LayerCase(lambda: StreamingConvTranspose1d(5, 3, 4, stride=2), 5, 1, 2),
    "convtr-k10-stride5": LayerCase(lambda: StreamingConvTranspose1d(5, 3, 10, stride=5), 5, 1, 5),
    "convtr-k3-stride3": LayerCase(lambda: StreamingConvTranspose1d(5, 3, 3, stride=3), 5, 1, 3),
    "convtr-k5-stride2": LayerCase(lambda: StreamingConvTranspose1d(5, 3, 5, stride=2), 5, 1, 2),
    "lstm-1layer": LayerCase(lambda: StreamingLSTM(6, num_layers=1), 6, 1, 1),
    "lstm-2layers": LayerCase(lambda: StreamingLSTM(6, num_layers=2), 6, 1, 1),
}

#: Chunk plans in steps of ``in_step``; a plan repeats until the input is used up.
CHUNK_PLANS = {"1-step": [1], "4-steps": [4], "uneven-3-1-5": [3, 1, 5], "whole": [10_000]}


def build(case: LayerCase) -> StreamingModule:
    """The case's layer, with seeded weights and a non-zero bias where it has one."""
    torch.manual_seed(0)
    layer = case.build().eval()
    if isinstance(layer, StreamingConvTranspose1d):
        torch.nn.init.normal_(layer.bias)  # the bias starts at zero; make it matter
    return layer


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("steps", [0, 1, 7, 24])
def test_output_length(case: LayerCase, steps: int) -> None:
    layer = build(case)
    y = layer(torch.randn(BATCH, case.in_channels, steps * case.in_step))
    assert y.shape[0] == BATCH
    assert y.shape[-1] == steps * case.out_step


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("m", [1, 5, 12])
def test_prefix_causality(case: LayerCase, m: int) -> None:
    """Changing the input from step ``m`` on leaves every output before ``m * out_step`` unchanged."""
    layer = build(case)
    x = torch.randn(BATCH, case.in_channels, 20 * case.in_step)
    changed = x.clone()
    changed[..., m * case.in_step :] = torch.randn_like(changed[..., m * case.in_step :])
    with torch.no_grad():
        y, y_changed = layer(x), layer(changed)
    cut = m * case.out_step
    torch.testing.assert_close(y_changed[..., :cut], y[..., :cut], atol=1e-6, rtol=0)
    # The first output after the cut sees the changed input, so the check above is not vacuous.
    assert (y_changed[..., cut] - y[..., cut]).abs().max() > 1e-4


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("plan", CHUNK_PLANS.values(), ids=CHUNK_PLANS.keys())
def test_chunked_equals_offline(case: LayerCase, plan: list[int]) -> None:
    layer = build(case)
    x = torch.randn(BATCH, case.in_channels, 23 * case.in_step)
    with torch.no_grad():
        offline = layer(x)
        outputs = []
        with streaming(layer, batch_size=BATCH):
            for part in chunks(x.shape[-1], plan, case.in_step):
                outputs.append(layer(x[..., part]))
    chunked = torch.cat(outputs, dim=-1)
    assert chunked.shape == offline.shape
    assert (chunked - offline).abs().max() <= 1e-5


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_state_is_dropped_after_streaming(case: LayerCase) -> None:
    """Leaving the context forgets the state: an offline call afterwards starts from zeros."""
    layer = build(case)
    x = torch.randn(BATCH, case.in_channels, 6 * case.in_step)
    with torch.no_grad():
        before = layer(x)
        with streaming(layer, batch_size=BATCH):
            layer(torch.randn_like(x))
            assert layer.is_streaming
        assert not layer.is_streaming
        after = layer(x)
    torch.testing.assert_close(after, before, atol=0, rtol=0)


@pytest.mark.parametrize("name", [n for n in CASES if n.startswith("conv")])
def test_matches_the_textbook_operation(name: str) -> None:
    """Offline, each layer equals torch's plain (transposed) convolution with zeros before the input."""
    layer, case = build(CASES[name]), CASES[name]
    x = torch.randn(BATCH, case.in_channels, 12 * case.in_step)
    with torch.no_grad():
        if isinstance(layer, StreamingConvTranspose1d):
            full = F.conv_transpose1d(x, layer.convtr.weight, stride=layer.stride)  # [B, C, (F - 1) s + k]
            expected = full[..., : x.shape[-1] * layer.stride] + layer.bias[:, None]
        else:
            conv = layer.conv
            padded = F.pad(x, (layer.context, 0))
            expected = F.conv1d(padded, conv.weight, conv.bias, layer.stride, 0, conv.dilation, conv.groups)
        torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("steps", [0, 1, 9])
@pytest.mark.parametrize("extra", [0, 1])
def test_time_major_equals_offline(case: LayerCase, steps: int, extra: int) -> None:
    """The time-major inference path gives the ``[B, C, T]`` layer's numbers, ragged ends included."""
    layer = build(case)
    length = steps * case.in_step + (extra if case.in_step > 1 else 0)
    x = torch.randn(BATCH, case.in_channels, length)
    with torch.no_grad():
        expected = layer(x)
        got = layer.time_major(x.transpose(1, 2).contiguous()).transpose(1, 2)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


LAYOUTS = {"time-major": ["time-major"], "alternating": ["time-major", "channels-first"]}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("plan", CHUNK_PLANS.values(), ids=CHUNK_PLANS.keys())
@pytest.mark.parametrize("layouts", LAYOUTS.values(), ids=LAYOUTS.keys())
@pytest.mark.parametrize("batch", [1, BATCH], ids=lambda b: f"B{b}")
def test_time_major_streaming_equals_offline(case: LayerCase, plan: list[int], layouts: list[str], batch: int) -> None:
    """Streamed time-major, or alternating with ``[B, C, T]`` calls on the same state, chunks give the offline output.

    One item one step at a time takes the one-window product of a single output row.
    """
    layer = build(case)
    x = torch.randn(batch, case.in_channels, 23 * case.in_step + (2 if case.in_step > 1 else 0))
    with torch.no_grad():
        offline = layer(x)
        outputs = []
        with streaming(layer, batch_size=batch):
            for i, part in enumerate(chunks(x.shape[-1], plan, case.in_step)):
                if layouts[i % len(layouts)] == "time-major":
                    outputs.append(layer.time_major(x[..., part].transpose(1, 2)).transpose(1, 2))
                else:
                    outputs.append(layer(x[..., part]))
    chunked = torch.cat(outputs, dim=-1)
    assert chunked.shape == offline.shape
    assert (chunked - offline).abs().max() <= 1e-5


@pytest.mark.parametrize("dilation", [1, 2])
def test_time_major_single_input_channel(dilation: int) -> None:
    """A one-channel input (the waveform) gathers its windows; the result is the same convolution."""
    torch.manual_seed(0)
    layer = StreamingConv1d(1, 4, 7, dilation=dilation).eval()
    x = torch.randn(BATCH, 1, 50)
    with torch.no_grad():
        torch.testing.assert_close(layer.time_major(x.transpose(1, 2)).transpose(1, 2), layer(x), atol=1e-5, rtol=1e-5)


def test_streaming_rejects_another_batch_size() -> None:
    layer = build(CASES["conv-k7"])
    with streaming(layer, batch_size=2), pytest.raises(InputError, match="batch size 2.*batch size 3"):
        layer(torch.randn(3, 3, 8))


def test_nested_streaming_raises() -> None:
    layer = build(CASES["lstm-1layer"])
    with streaming(layer, batch_size=1), pytest.raises(InputError, match="already active"), streaming(layer, 1):
        pass
