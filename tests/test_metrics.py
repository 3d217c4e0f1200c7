"""Quality metrics on real speech: identical signals score best, added noise scores worse."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_speech

from codec.errors import InputError
from eval import metrics

RATE = 16000
SNR_DB = 10.0


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    """2 s of real speech from tests/data at 16 kHz, ``[T]``."""
    return load_speech(RATE, index=0, seconds=2.0)[0, 0].numpy()


@pytest.fixture(scope="module")
def noisy(clean: np.ndarray) -> np.ndarray:
    """``clean`` plus white noise at :data:`SNR_DB`."""
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(clean.shape).astype(np.float32)
    noise *= np.sqrt(np.mean(clean**2) / np.mean(noise**2) / 10 ** (SNR_DB / 10))
    return clean + noise


def _better(metric: metrics.Metric, a: float, b: float) -> bool:
    return a > b if metric.higher_is_better else a < b


@pytest.mark.parametrize("name", ["sisdr", "mel", "stoi", "pesq"])
def test_identical_scores_best_and_noise_lowers_it(name: str, clean: np.ndarray, noisy: np.ndarray) -> None:
    metric = metrics.METRICS[name]
    identical = metric.score(clean, clean.copy(), RATE)
    degraded = metric.score(clean, noisy, RATE)
    best = {"sisdr": metrics.SISDR_MAX_DB, "mel": 0.0, "stoi": 1.0, "pesq": 4.64}[name]
    assert identical == pytest.approx(best, abs=0.01)
    assert _better(metric, identical, degraded)
    assert abs(identical - degraded) > 0.05 * max(abs(best), 1.0)


def test_sisdr_ignores_scale_and_matches_the_snr(clean: np.ndarray, noisy: np.ndarray) -> None:
    assert metrics.si_sdr(clean, 0.3 * clean) == metrics.SISDR_MAX_DB
    assert metrics.si_sdr(clean, noisy) == pytest.approx(SNR_DB, abs=0.5)  # white noise: SI-SDR ~ SNR


def test_more_noise_gives_a_larger_mel_distance(clean: np.ndarray, noisy: np.ndarray) -> None:
    noisier = clean + 3 * (noisy - clean)
    assert metrics.mel_distance(clean, noisier, RATE) > metrics.mel_distance(clean, noisy, RATE) > 0


def test_visqol_speech_uses_the_lattice_mapping(clean: np.ndarray, noisy: np.ndarray) -> None:
    try:
        api = metrics.visqol_api("speech")
    except metrics.MetricUnavailableError as e:
        pytest.skip(str(e))
    assert type(api._manager.quality_mapper).__name__ == "TFLiteSpeechQualityMapper"
    identical = metrics.visqol_speech(clean, clean.copy(), RATE)
    degraded = metrics.visqol_speech(clean, noisy, RATE)
    # The lattice mapping scores identical speech about 4.5-4.7; the polynomial fallback would give 5.00.
    assert 4.2 < identical < 4.9
    assert degraded < identical - 1.0
    assert metrics.METRICS["visqol"].label == "ViSQOL speech (lattice)"
    with pytest.raises(metrics.MetricError, match="too short"):
        metrics.visqol_speech(clean[: RATE // 2], clean[: RATE // 2], RATE)


def test_visqol_audio_mode_at_48khz(clean: np.ndarray, noisy: np.ndarray) -> None:
    try:
        metrics.visqol_api("audio")
    except metrics.MetricUnavailableError as e:
        pytest.skip(str(e))
    identical = metrics.visqol_audio(clean, clean.copy(), RATE)
    assert 4.0 < identical < 5.0
    assert metrics.visqol_audio(clean, noisy, RATE) < identical - 0.5


def test_dnsmos_prefers_clean_speech(clean: np.ndarray, noisy: np.ndarray) -> None:
    try:
        metrics.dnsmos_model()
    except metrics.MetricUnavailableError as e:
        pytest.skip(str(e))
    n = int(9.02 * RATE)  # DNSMOS scores 9.01 s windows one second apart: exactly one window here
    clean_9s, noisy_9s = np.tile(clean, 5)[:n], np.tile(noisy, 5)[:n]
    assert metrics.dnsmos_overall(None, clean_9s, RATE) > metrics.dnsmos_overall(None, noisy_9s, RATE) + 0.3


def test_signals_of_different_lengths_are_refused(clean: np.ndarray) -> None:
    with pytest.raises(InputError, match="differ in length"):
        metrics.si_sdr(clean, clean[:-1])
    with pytest.raises(InputError, match="mono 1-D"):
        metrics.pesq_wb(clean[None], clean[None], RATE)


def test_unknown_metric_names_the_choices() -> None:
    with pytest.raises(InputError, match="choose from visqol"):
        metrics.get_metrics(["visqol", "polqa"])


def test_pesq_on_silence_raises_a_metric_error() -> None:
    silence = np.zeros(RATE * 2, dtype=np.float32)
    with pytest.raises(metrics.MetricError, match="PESQ failed"):
        metrics.pesq_wb(silence, silence, RATE)


def test_pitch_accuracy_keeps_a_kept_pitch_and_catches_a_shifted_one(clean: np.ndarray, noisy: np.ndarray) -> None:
    """Noise at 10 dB keeps most of speech's pitch; speech played 6% faster (a semitone up) keeps none of it."""
    assert metrics.raw_pitch_accuracy(clean, clean.copy(), RATE) == 1.0
    assert metrics.raw_pitch_accuracy(clean, noisy, RATE) > 0.8
    faster = np.interp(np.arange(len(clean)) * 1.06, np.arange(len(clean)), clean, right=0.0).astype(np.float32)
    # the same length, pitch 100 cents up (and time squeezed: frames no longer line up either)
    assert metrics.raw_pitch_accuracy(clean, faster, RATE) < 0.2
    with pytest.raises(metrics.MetricError, match="no voiced frame"):
        metrics.raw_pitch_accuracy(np.zeros(RATE, dtype=np.float32), np.zeros(RATE, dtype=np.float32), RATE)


# ----- band energy ------------------------------------------------------------------------------
BAND_TONES_HZ = (250.0, 750.0, 1500.0, 3000.0, 6000.0)  # one tone inside each band at 16 kHz
BAND_GAINS_DB = (0.0, -3.0, -12.0, -20.0, 6.0)


def _tones(amplitudes: list[float], rate: int = RATE, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return sum(a * np.sin(2 * np.pi * f * t) for a, f in zip(amplitudes, BAND_TONES_HZ)).astype(np.float32)


def test_band_edges_are_octaves_up_to_nyquist() -> None:
    assert metrics.band_edges_hz(16000) == [(0, 500), (500, 1000), (1000, 2000), (2000, 4000), (4000, 8000)]
    assert metrics.band_edges_hz(24000)[-1] == (8000, 12000)
    assert metrics.band_edges_hz(44100)[-2:] == [(8000, 16000), (16000, 22050)]
    assert [metrics.band_label(lo, hi) for lo, hi in metrics.band_edges_hz(16000)] == [
        "0-0.5 kHz", "0.5-1 kHz", "1-2 kHz", "2-4 kHz", "4-8 kHz"]


def test_band_energy_ratios_recover_known_gains_per_band() -> None:
    ref = _tones([0.1] * 5)
    deg = _tones([0.1 * 10 ** (g / 20) for g in BAND_GAINS_DB])
    ratios = metrics.band_energy_ratios_db(ref, deg, RATE)
    assert list(ratios) == ["0-0.5 kHz", "0.5-1 kHz", "1-2 kHz", "2-4 kHz", "4-8 kHz"]
    assert list(ratios.values()) == pytest.approx(BAND_GAINS_DB, abs=0.05)
    energies = metrics.band_energies(ref, RATE)
    assert energies == pytest.approx(np.full(5, energies[0]), rel=0.02)  # equal tones, equal band energies


def test_band_energy_of_speech_shows_a_low_pass(clean: np.ndarray) -> None:
    import torch

    from codec.audio import resample

    muffled = resample(resample(torch.from_numpy(clean), RATE, 4000), 4000, RATE).numpy()  # nothing above 2 kHz
    ratios = metrics.band_energy_ratios_db(clean, muffled, RATE)
    assert abs(ratios["0-0.5 kHz"]) < 0.1 and abs(ratios["0.5-1 kHz"]) < 0.1 and abs(ratios["1-2 kHz"]) < 1
    assert ratios["2-4 kHz"] < -10 and ratios["4-8 kHz"] < -40
    assert set(metrics.band_energy_ratios_db(clean, clean.copy(), RATE).values()) == {0.0}
