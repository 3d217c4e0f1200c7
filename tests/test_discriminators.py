"""Discriminator outputs, adversarial losses and the spectral reconstruction losses."""

from __future__ import annotations

import pytest
import torch

from codec.errors import ConfigError
from train.config import DiscConfig
from train.discriminators import Discriminators
from train.losses import (
    LogMelLoss,
    PhaseDerivativeLoss,
    build_mel_loss,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)

SMALL = {"mpd_channels": (4, 8, 8), "msd_channels": (4, 8, 8, 8), "msstft_filters": 4, "mrd_channels": 4}


@pytest.mark.parametrize(
    ("kinds", "count"),
    [(("msd",), 3), (("mpd",), 5), (("msstft",), 5), (("mrd",), 3), (("msd", "mpd", "msstft", "mrd"), 16)],
    ids=["msd", "mpd", "msstft", "mrd", "all"],
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


def test_mrd_splits_each_resolution_into_its_bands() -> None:
    """Five bands of five layers per window; the logits cover every band's downsampled bins."""
    disc = Discriminators(DiscConfig(kinds=("mrd",), mrd_windows=(512,), mrd_channels=4))
    (logits, features), = disc(torch.randn(2, 1, 4000))
    assert len(features) == 5 * 5
    frames = 4000 // 128 + 1
    bins = [hi - lo for lo, hi in disc.subs[0].edges]
    assert sum(bins) == 257
    assert logits.shape == (2, 1, frames, sum(-(-b // 8) for b in bins))  # three frequency strides of 2


@pytest.mark.parametrize("magnitude_only", [False, True])
def test_mrd_tells_real_speech_from_a_muffled_copy_after_training(speech, magnitude_only: bool) -> None:
    """A few critic updates on real speech against a low-passed copy separate their logits."""
    torch.manual_seed(0)
    disc = Discriminators(DiscConfig(kinds=("mrd",), mrd_windows=(256,), mrd_channels=4,
                                     mrd_magnitude_only=magnitude_only))
    real = torch.cat([speech(16000, index=i, seconds=0.5) for i in range(2)])  # [2, 1, T]
    fake = torch.nn.functional.avg_pool1d(real, 9, stride=1, padding=4)  # muffled: little above 1 kHz
    opt = torch.optim.Adam(disc.parameters(), 1e-2)
    for _ in range(30):
        loss = discriminator_loss(disc(real), disc(fake), "hinge")
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        (real_logits, _), = disc(real)
        (fake_logits, _), = disc(fake)
    assert real_logits.mean() > fake_logits.mean() + 0.5


def test_a_magnitude_only_mrd_cannot_see_phase(speech) -> None:
    """Negating speech shifts every STFT phase by pi and keeps the magnitudes: only the complex critic sees it."""
    torch.manual_seed(0)
    wav = speech(16000, index=0, seconds=0.5)
    for magnitude_only, same in ((True, True), (False, False)):
        disc = Discriminators(DiscConfig(kinds=("mrd",), mrd_windows=(512,), mrd_channels=4,
                                         mrd_magnitude_only=magnitude_only))
        with torch.no_grad():
            (logits, _), = disc(wav)
            (flipped, _), = disc(-wav)
        assert torch.allclose(logits, flipped, atol=1e-5) == same


def test_log_mel_loss_is_zero_for_equal_signals_and_log10_of_a_gain(speech) -> None:
    wav = speech(16000, index=0, seconds=1.0)
    loss = LogMelLoss(16000, (32, 64, 128, 256, 512, 1024, 2048), (5, 10, 20, 40, 80, 160, 320))
    assert float(loss(wav, wav)) == 0.0
    gained = float(loss(2 * wav, wav))  # log10(2) wherever the mel magnitude is above the 1e-5 floor
    assert 0.25 < gained <= 0.30103 + 1e-5
    noisy = wav + 0.01 * torch.randn_like(wav)
    assert float(loss(noisy, wav)) > 0.05


def test_band_energy_term_sees_spectral_balance_and_not_fine_structure(speech) -> None:
    """The band-energy term: log10 of each mel band's mean power (a 2x gain costs log10(4) in every band),
    blind to where in the crop the energy lies (a time shift), and alert to a cut above 1 kHz."""
    wav = speech(16000, index=0, seconds=1.0)  # [1, 1, T]
    windows, bins = (256, 512, 1024, 2048), (40, 80, 160, 320)
    plain, balanced = LogMelLoss(16000, windows, bins), LogMelLoss(16000, windows, bins, energy=1.0)
    assert float(balanced(wav, wav)) == 0.0
    assert float(balanced(2 * wav, wav)) - float(plain(2 * wav, wav)) == pytest.approx(0.60206, abs=0.02)
    shifted = torch.roll(wav, 4000, dims=-1)  # the same sounds a quarter second later
    assert float(balanced(shifted, wav)) - float(plain(shifted, wav)) < 0.25 * float(plain(shifted, wav))
    window = torch.hann_window(512)
    spec = torch.stft(wav[0], 512, 128, window=window, return_complex=True)  # [1, 257, frames]
    spec[:, 32:129] *= 0.5  # 1-4 kHz 6 dB down
    muffled = torch.istft(spec, 512, 128, window=window, length=wav.shape[-1])[None]
    added = float(balanced(muffled, wav)) - float(plain(muffled, wav))
    assert 0.15 < added < 0.60206  # log10(4) in the bands inside 1-4 kHz, about none below
    with pytest.raises(ConfigError, match="mel_energy"):
        LogMelLoss(16000, windows, bins, energy=-1.0)
    with pytest.raises(ConfigError, match="mel_energy"):
        build_mel_loss("auraloss", 16000, (64, 128), 8, energy=1.0)


def test_phase_loss_sees_incoherent_phase_that_the_mel_loss_misses(speech) -> None:
    """Same magnitudes, scrambled phases: the log-mel loss barely moves, the phase loss does; a sign flip (a
    constant phase offset in every bin) changes neither."""
    wav = speech(16000, index=0, seconds=1.0)  # [1, 1, T]
    phase, mel = PhaseDerivativeLoss((512, 1024)), LogMelLoss(16000, (512, 1024), (80, 160))
    assert float(phase(wav, wav)) == 0.0
    assert float(phase(-wav, wav)) < 1e-4  # waveform L1 would be twice the signal's
    window = torch.hann_window(640)
    spec = torch.stft(wav[0], 640, 160, window=window, return_complex=True)
    torch.manual_seed(0)
    scrambled = torch.polar(spec.abs(), 2 * torch.pi * torch.rand(spec.shape))
    incoherent = torch.istft(scrambled, 640, 160, window=window, length=wav.shape[-1])[None]
    assert float(phase(incoherent, wav)) > 1.5 > 4 * float(mel(incoherent, wav))
    x_hat = wav.clone().requires_grad_()
    phase(0.5 * x_hat + 0.01 * torch.randn_like(wav), wav).backward()
    assert torch.isfinite(x_hat.grad).all() and x_hat.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="phase_windows"):
        PhaseDerivativeLoss(())


def test_mel_loss_kinds_and_their_errors() -> None:
    assert isinstance(build_mel_loss("log_mel", 16000, (64, 128), (8, 16)), LogMelLoss)
    with pytest.raises(ConfigError, match="mel_kind"):
        build_mel_loss("mfcc", 16000, (64,), 8)
    with pytest.raises(ConfigError, match="one per window"):
        build_mel_loss("log_mel", 16000, (64, 128), (8, 16, 32))
    with pytest.raises(ConfigError, match="one mel bin count"):
        build_mel_loss("auraloss", 16000, (64, 128), (8, 16))
