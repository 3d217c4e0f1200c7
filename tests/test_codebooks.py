"""Codebook usage statistics: perplexity, dead codes and entropy."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import soundfile as sf
import torch
from conftest import DATA_DIR

from codec.cli import main
from codec.errors import InputError
from codec.network.model import Codec
from eval.codebooks import CodeCounter, codebook_stats, entropy_bound_kbps


def test_uniform_usage_has_full_perplexity_and_no_dead_codes() -> None:
    codes = torch.arange(64).repeat(3).view(1, 1, -1)  # every code 3 times   [1, 1, 192]
    (stats,) = codebook_stats([codes], codebook_size=64)
    assert stats.entropy_bits == pytest.approx(6.0)
    assert stats.perplexity == pytest.approx(64.0)
    assert stats.dead_fraction == 0.0
    assert stats.codes_seen == 192


def test_a_single_code_has_perplexity_one() -> None:
    codes = torch.full((2, 2, 10), 5)  # [B, n_q, F]
    stats = codebook_stats([codes, codes], codebook_size=16)
    assert [s.level for s in stats] == [1, 2]
    assert stats[0].entropy_bits == 0.0
    assert stats[0].perplexity == 1.0
    assert stats[0].dead_fraction == pytest.approx(15 / 16)


def test_padding_frames_are_not_counted() -> None:
    codes = torch.tensor([[[1, 2, 3, 3]], [[4, 4, 0, 0]]])  # [2, 1, 4]; item 1 has 2 valid frames
    counter = CodeCounter(codebook_size=8)
    counter.update(codes, frame_lengths=torch.tensor([4, 2]))
    assert counter.counts[0].tolist() == [0, 1, 1, 2, 2, 0, 0, 0]
    assert counter.stats()[0].dead_fraction == pytest.approx(4 / 8)


def test_real_speech_codes(fitted_codec: Codec, speech: Callable[..., torch.Tensor]) -> None:
    encoded = fitted_codec.encode(speech(16000, seconds=1.0))
    stats = codebook_stats([encoded.codes], fitted_codec.config.codebook_size)
    assert len(stats) == fitted_codec.config.n_q
    for s in stats:
        assert 0.0 < s.entropy_bits <= s.bits_per_code == math.log2(fitted_codec.config.codebook_size)
        assert 1.0 < s.perplexity <= fitted_codec.config.codebook_size
        assert 0.0 <= s.dead_fraction < 1.0
    bound = entropy_bound_kbps(stats, fitted_codec.frame_rate_hz)
    assert 0 < bound <= fitted_codec.bandwidths_kbps[-1]


def test_errors() -> None:
    counter = CodeCounter(codebook_size=8)
    with pytest.raises(InputError, match="no codes were counted"):
        counter.stats()
    with pytest.raises(InputError, match="0..7"):
        counter.update(torch.full((1, 1, 3), 8))
    counter.update(torch.zeros(1, 2, 3, dtype=torch.long))
    with pytest.raises(InputError, match="earlier batches had 2"):
        counter.update(torch.zeros(1, 3, 3, dtype=torch.long))


def test_codebooks_command_counts_every_frame_of_real_speech(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(DATA_DIR.glob("*.wav"))
    assert main(["codebooks", "--data", str(DATA_DIR), "--json", str(tmp_path / "usage.json"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "dead fraction" in out and "most dead: level" in out
    report = json.loads((tmp_path / "usage.json").read_text())
    frames = sum(math.ceil(sf.info(str(f)).duration * 16000 / 320 - 1e-6) for f in files)
    assert [level["codes_seen"] for level in report["levels"]] == [frames] * 8
    assert all(0 < level["dead_fraction"] < 1 for level in report["levels"])
    assert main(["codebooks", "--data", str(tmp_path / "missing")]) != 0
    assert "missing is neither a folder nor a manifest" in capsys.readouterr().err
