"""SI-SDR and codebook perplexity: the one implementation that the quantizer, training and evaluation share."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import load_speech

from codec.measures import entropy_bits, perplexity, si_sdr_db
from eval import metrics


def test_si_sdr_is_scale_invariant_and_drops_with_noise() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 1, 8000)
    assert si_sdr_db(x, 0.5 * x).shape == (2, 1)
    assert float(si_sdr_db(x, 0.5 * x).min()) > 60
    assert float(si_sdr_db(x, x + 0.1 * torch.randn_like(x)).mean()) == pytest.approx(20, abs=1)


def test_the_evaluation_metric_is_the_shared_si_sdr() -> None:
    speech = load_speech(16000, seconds=1.0)[0, 0].double()  # [T]
    torch.manual_seed(0)
    degraded = 0.5 * speech + 0.05 * torch.randn_like(speech)
    ours = float(si_sdr_db(speech, degraded))
    assert metrics.si_sdr(speech.numpy(), degraded.numpy()) == pytest.approx(ours, abs=1e-6)


def test_perplexity_of_usage_counts() -> None:
    counts = torch.tensor([[5, 5, 5, 5], [20, 0, 0, 0], [3, 1, 0, 0], [0, 0, 0, 0]])  # [levels, K]
    assert perplexity(counts).tolist() == pytest.approx([4.0, 1.0, 2 ** (-(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))), 1.0])
    assert entropy_bits(counts)[0] == pytest.approx(2.0)  # log2 K when all entries are used equally
