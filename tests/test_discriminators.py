"""Discriminator outputs and adversarial losses."""

from __future__ import annotations

import pytest
import torch

from train.config import DiscConfig
from train.discriminators import Discriminators
from train.losses import discriminator_loss, feature_matching_loss, generator_adversarial_loss, si_sdr

SMALL = {"mpd_channels": (4, 8, 8), "msd_channels": (4, 8, 8, 8), "msstft_filters": 4}


@pytest.mark.parametrize(
    ("kinds", "count"), [(("msd",), 3), (("mpd",), 5), (("msstft",), 5), (("msd", "mpd", "msstft"), 13)],
    ids=["msd", "mpd", "msstft", "all"],
)
def test_outputs_per_sub_discriminator(kinds: tuple[str, ...], count: int) -> None:
    disc = Discriminators(DiscConfig(kinds=kinds, **SMALL))
    wav = torch.randn(2, 1, 4000)
    outputs = disc(wav)
    assert len(outputs) == count
    for logits, features in outputs:
        assert logits.shape[0] == 2 and logits.shape[1] == 1
        assert features and all(f.shape[0] == 2 for f in features)


def test_msd_scales_see_pooled_audio() -> None:
    disc = Discriminators(DiscConfig(kinds=("msd",), **SMALL))
    sizes = [out[0].shape[-1] for out in disc(torch.randn(1, 1, 8192))]
    assert sizes[0] > sizes[1] > sizes[2]


def test_mpd_folds_by_period() -> None:
    disc = Discriminators(DiscConfig(kinds=("mpd",), mpd_periods=(2, 3), **SMALL))
    outputs = disc(torch.randn(1, 1, 1001))
    assert [o[0].shape[-1] for o in outputs] == [2, 3]


def test_unknown_kind_is_a_config_error() -> None:
    from codec.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown discriminator"):
        Discriminators(DiscConfig(kinds=("wavelet",)))


@pytest.mark.parametrize("kind", ["hinge", "lsgan"])
def test_adversarial_losses_prefer_the_right_side(kind: str) -> None:
    real = [(torch.full((2, 1, 5), 1.0), [])]
    fake = [(torch.full((2, 1, 5), -1.0 if kind == "hinge" else 0.0), [])]  # each loss's ideal fake logit
    assert float(discriminator_loss(real, fake, kind)) == pytest.approx(0.0)
    assert float(generator_adversarial_loss(fake, kind)) > float(generator_adversarial_loss(real, kind))


def test_feature_matching_is_relative_and_zero_for_equal_features() -> None:
    feats = [torch.randn(2, 3, 10), torch.randn(2, 4, 5)]
    same = [(torch.zeros(1), feats)]
    assert float(feature_matching_loss(same, same)) == 0.0
    scaled = [(torch.zeros(1), [100 * f for f in feats])]
    other = [(torch.zeros(1), [100 * f + 100 for f in feats])]
    base = [(torch.zeros(1), [f + 1 for f in feats])]
    assert float(feature_matching_loss(scaled, other)) == pytest.approx(float(feature_matching_loss(same, base)), rel=1e-4)


def test_si_sdr_is_scale_invariant_and_drops_with_noise() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 1, 8000)
    assert float(si_sdr(0.5 * x, x).mean()) > 60
    assert float(si_sdr(x + 0.1 * torch.randn_like(x), x).mean()) == pytest.approx(20, abs=1)
