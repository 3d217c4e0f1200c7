"""Audio quality metrics, each a function of a reference and a degraded signal.

Every metric takes mono signals as 1-D float arrays ``[T]`` in [-1, 1] at a
common ``rate`` and resamples internally to the rate it is defined at:

=============  ======================================================  ==========  ========
name           what                                                    rate        better
=============  ======================================================  ==========  ========
visqol         ViSQOL v3 speech mode, lattice mapping (MOS-LQO 1..5)   16 kHz      higher
visqol_audio   ViSQOL v3 audio mode, SVR mapping (MOS-LQO 1..~4.75)    48 kHz      higher
pesq           PESQ wideband (ITU-T P.862.2, MOS-LQO 1..4.64)          16 kHz      higher
stoi           short-time objective intelligibility (0..1)             10 kHz      higher
sisdr          scale-invariant signal-to-distortion ratio (dB)         any         higher
mel            multi-resolution log-mel L1 distance                    any         lower
pitch          raw pitch accuracy: voiced frames within 50 cents (0..1) any         higher
dnsmos         DNSMOS P.835 overall (non-intrusive, 1..5)              16 kHz      higher
=============  ======================================================  ==========  ========

Beside them, :func:`band_energy_ratios_db` gives the energy of the decoded
signal against the reference in octave bands (0-0.5, 0.5-1, 1-2, 2-4, 4-8 kHz,
then 8-16 kHz and so on up to the Nyquist frequency), in dB: 0 where a band
is kept, negative where it is muffled, positive where noise or hiss is added.

ViSQOL speech mode maps its similarity to MOS with the deep-lattice model that
Google's C++ ViSQOL uses by default (``--use_lattice_model=true``); the
polynomial fallback scores identical signals 5.00 instead of about 4.5 and
over-predicts degraded speech by 1-2 points, so it is never used here: if the
lattice runtime is missing the metric is unavailable. Speech and audio mode
scores are not comparable with each other.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from codec.audio import resample
from codec.errors import CodecError, InputError
from codec.measures import si_sdr_db
from codec.pitch import pitch_track
from codec.spectrogram import fft_size, power_spectrogram

#: ViSQOL speech mode's similarity-to-MOS mapping (the C++ default), named in every output.
VISQOL_SPEECH_MAPPING = "lattice"
#: ViSQOL audio mode's mapping: the support-vector regression model bundled with ViSQOL.
VISQOL_AUDIO_MAPPING = "svr"

SPEECH_RATE_HZ = 16000  # ViSQOL speech mode, PESQ-WB and DNSMOS are defined at 16 kHz
AUDIO_RATE_HZ = 48000  # ViSQOL audio mode
MEL_WINDOWS = (256, 512, 1024, 2048)  # STFT sizes of the multi-resolution mel distance
MEL_BINS_MAX = 64
LOG_FLOOR = 1e-5  # mel power floor before the log
SISDR_MAX_DB = 100.0  # identical signals have infinite SI-SDR; JSON has no infinity
FIRST_BAND_EDGE_HZ = 500  # bands: 0-500 Hz, then octaves 500-1000, 1000-2000, ... up to Nyquist
BAND_LIMIT_DB = 100.0  # a band empty in one signal only has an infinite ratio; JSON has no infinity


class MetricError(CodecError):
    """A metric could not score a signal (for example PESQ on silence)."""


class MetricUnavailableError(MetricError):
    """A metric's library or model cannot be loaded on this machine."""


def _check_pair(ref: np.ndarray, deg: np.ndarray) -> None:
    if ref.ndim != 1 or deg.ndim != 1:
        raise InputError(f"metrics take mono 1-D signals [T], got shapes {ref.shape} and {deg.shape}")
    if ref.shape != deg.shape:
        raise InputError(f"reference and degraded signals differ in length: {ref.shape[0]} vs {deg.shape[0]} samples")


def _at_rate(x: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """``x`` [T] resampled from ``rate`` to ``target_rate`` (float64 for the metric libraries)."""
    if rate == target_rate:
        return x.astype(np.float64)
    return resample(torch.from_numpy(x.astype(np.float32)), rate, target_rate).double().numpy()


# ----- signal metrics ---------------------------------------------------------------------------
def si_sdr(ref: np.ndarray, deg: np.ndarray, rate: int | None = None) -> float:
    """Scale-invariant SDR in dB of ``deg`` against ``ref`` (:func:`codec.measures.si_sdr_db`), in float64.

    Capped at :data:`SISDR_MAX_DB` (reached by identical signals). ``rate`` is
    accepted for a uniform signature and ignored.
    """
    _check_pair(ref, deg)
    ref_t, deg_t = torch.from_numpy(ref.astype(np.float64)), torch.from_numpy(deg.astype(np.float64))
    return float(min(SISDR_MAX_DB, si_sdr_db(ref_t, deg_t, eps=float(np.finfo(np.float64).eps))))


@functools.lru_cache(maxsize=8)
def _mel_transforms(rate: int) -> tuple:
    import torchaudio

    return tuple(
        torchaudio.transforms.MelSpectrogram(
            rate, n_fft=n_fft, hop_length=n_fft // 4, n_mels=min(MEL_BINS_MAX, n_fft // 8), power=1.0
        )
        for n_fft in MEL_WINDOWS
    )


def mel_distance(ref: np.ndarray, deg: np.ndarray, rate: int) -> float:
    """Mean over STFT sizes :data:`MEL_WINDOWS` of the L1 distance of log mel magnitudes.

    Each resolution uses a hop of a quarter window and ``min(64, n_fft / 8)``
    mel bins (more bins than that leave empty filters at 256 points); 0 for
    identical signals.
    """
    _check_pair(ref, deg)
    x = torch.from_numpy(np.stack([ref, deg]).astype(np.float32))  # [2, T]
    distances = []
    for transform in _mel_transforms(rate):
        mel = transform(x).clamp(min=LOG_FLOOR).log()  # [2, n_mels, frames]
        distances.append((mel[0] - mel[1]).abs().mean())
    return float(torch.stack(distances).mean())


def pesq_wb(ref: np.ndarray, deg: np.ndarray, rate: int) -> float:
    """PESQ wideband MOS-LQO at 16 kHz (the ``pesq`` package, ITU-T P.862.2)."""
    from pesq import PesqError, pesq

    _check_pair(ref, deg)
    ref, deg = _at_rate(ref, rate, SPEECH_RATE_HZ), _at_rate(deg, rate, SPEECH_RATE_HZ)
    try:
        with np.errstate(divide="ignore", invalid="ignore"):  # pesq divides by the peak, 0 for silence
            return float(pesq(SPEECH_RATE_HZ, ref, deg, "wb"))
    except PesqError as e:
        raise MetricError(f"PESQ failed ({type(e).__name__}: {e}); the reference may hold no speech") from None


def stoi(ref: np.ndarray, deg: np.ndarray, rate: int) -> float:
    """Short-time objective intelligibility (``pystoi``; resamples to 10 kHz itself)."""
    from pystoi import stoi as pystoi_stoi

    _check_pair(ref, deg)
    return float(pystoi_stoi(ref.astype(np.float64), deg.astype(np.float64), rate, extended=False))


# ----- band energy ------------------------------------------------------------------------------
def band_edges_hz(rate: int) -> list[tuple[float, float]]:
    """``(low, high)`` of each band at ``rate``: 0-500 Hz, then octaves, the last one ending at Nyquist.

    At 16 kHz: 0-500, 500-1000, 1000-2000, 2000-4000, 4000-8000; at 24 kHz the
    same and 8000-12000; at 44.1 kHz 8000-16000 and 16000-22050.
    """
    nyquist = rate / 2
    edges = [0.0, float(FIRST_BAND_EDGE_HZ)]
    while edges[-1] * 2 < nyquist:
        edges.append(edges[-1] * 2)
    edges.append(nyquist)
    return [(lo, hi) for lo, hi in itertools.pairwise(edges) if hi > lo]


def band_label(low_hz: float, high_hz: float) -> str:
    """``"0-0.5 kHz"``-style name of a band (the key in results)."""
    return f"{low_hz / 1000:g}-{high_hz / 1000:g} kHz"


def band_energies(wav: np.ndarray, rate: int) -> np.ndarray:
    """Energy of ``wav`` [T] in each band of :func:`band_edges_hz`: STFT power summed over frames and bins.

    The STFT is :func:`codec.spectrogram.power_spectrogram` at
    :func:`codec.spectrogram.fft_size` (512 points at 16 kHz). Bin ``k`` (centred
    on ``k * rate / n_fft`` Hz) belongs to the band with ``low <= f < high``;
    the last band includes Nyquist.
    """
    n_fft = fft_size(rate)
    power = power_spectrogram(torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)), n_fft)  # [K, frames]
    per_bin = power.double().sum(dim=1).numpy()  # [K]
    freqs = np.arange(per_bin.shape[0]) * rate / n_fft
    bands = band_edges_hz(rate)
    out = np.empty(len(bands))
    for i, (lo, hi) in enumerate(bands):
        inside = (freqs >= lo) & ((freqs < hi) | (i == len(bands) - 1))
        out[i] = per_bin[inside].sum()
    return out


def band_energy_ratios_db(ref: np.ndarray, deg: np.ndarray, rate: int) -> dict[str, float]:
    """Per band (see :func:`band_edges_hz`): ``10 log10(E_deg / E_ref)`` in dB, clipped to +-100.

    ``E`` is :func:`band_energies`. 0 dB: the band's energy is kept; -12 dB: a
    sixteenth of it is left (muffled); positive: energy added (noise, hiss,
    aliasing). Both energies get a floor of 1e-12 of the reference's total
    energy, so a band empty in both signals reads 0 dB.
    """
    _check_pair(ref, deg)
    e_ref, e_deg = band_energies(ref, rate), band_energies(deg, rate)
    floor = 1e-12 * max(float(e_ref.sum()), np.finfo(np.float64).tiny)
    ratios = 10 * np.log10((e_deg + floor) / (e_ref + floor))
    return {band_label(lo, hi): float(np.clip(r, -BAND_LIMIT_DB, BAND_LIMIT_DB))
            for (lo, hi), r in zip(band_edges_hz(rate), ratios)}


# ----- ViSQOL -----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=2)
def visqol_api(mode: str):
    """A ViSQOL instance for ``mode`` ("speech": lattice mapping, or "audio": SVR), created once.

    Raises:
        MetricUnavailableError: If visqol-python or its lattice runtime is not installed.
    """
    try:
        from visqol import VisqolApi

        api = VisqolApi()
        api.create(mode=mode, use_lattice_model=True if mode == "speech" else None)
    except ImportError as e:
        raise MetricUnavailableError(
            f"ViSQOL {mode} mode cannot load ({e}); install it with "
            "pip install 'visqol-python[accel,lattice]==3.8.0'"
        ) from None
    return api


def _visqol(mode: str, ref: np.ndarray, deg: np.ndarray, rate: int, mode_rate: int) -> float:
    _check_pair(ref, deg)
    api = visqol_api(mode)
    try:
        result = api.measure_from_arrays(_at_rate(ref, rate, mode_rate), _at_rate(deg, rate, mode_rate), mode_rate)
    except (ValueError, IndexError) as e:
        raise MetricError(f"ViSQOL {mode} mode failed ({type(e).__name__}: {e}); signals under about 1 s "
                          "are too short for it") from None
    return float(result.moslqo)


def visqol_speech(ref: np.ndarray, deg: np.ndarray, rate: int) -> float:
    """ViSQOL speech-mode MOS-LQO at 16 kHz with the lattice mapping."""
    return _visqol("speech", ref, deg, rate, SPEECH_RATE_HZ)


def visqol_audio(ref: np.ndarray, deg: np.ndarray, rate: int) -> float:
    """ViSQOL audio-mode MOS-LQO at 48 kHz (SVR mapping), for music and general audio."""
    return _visqol("audio", ref, deg, rate, AUDIO_RATE_HZ)


# ----- DNSMOS -----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def dnsmos_model():
    """The DNSMOS P.835 and P.808 ONNX models shipped in ``speechmos``, loaded once.

    Raises:
        MetricUnavailableError: If speechmos or onnxruntime cannot load them.
    """
    try:
        from speechmos import dnsmos

        models = os.path.join(os.path.dirname(dnsmos.__file__), "dnsmos_models")
        return dnsmos.DNSMOS(os.path.join(models, "sig_bak_ovr.onnx"), os.path.join(models, "model_v8.onnx"))
    except Exception as e:  # noqa: BLE001 - import, file and onnxruntime errors all mean "unavailable"
        raise MetricUnavailableError(
            f"DNSMOS cannot load ({type(e).__name__}: {e}); install it with pip install speechmos onnxruntime"
        ) from None


#: A decoded frame's pitch counts as right within this many cents of the reference's (MIREX raw pitch accuracy).
PITCH_TOLERANCE_CENTS = 50.0


def raw_pitch_accuracy(ref: np.ndarray, deg: np.ndarray, rate: int) -> float:
    """Of the reference's voiced 10 ms frames (Praat's track), the fraction where the decoded signal is voiced
    with a pitch within :data:`PITCH_TOLERANCE_CENTS`: 1 keeps every pitch, a lost or wrong pitch lowers it.

    Raises:
        MetricError: The reference has no voiced frame.
    """
    _check_pair(ref, deg)
    _, ref_hz = pitch_track(ref, rate)
    _, deg_hz = pitch_track(deg, rate)  # the same length, so the same analysis times
    voiced = ref_hz > 0
    if not voiced.any():
        raise MetricError("the reference has no voiced frame: raw pitch accuracy is undefined")
    cents = 1200 * np.abs(np.log2(np.where(deg_hz > 0, deg_hz, 1.0) / np.where(voiced, ref_hz, 1.0)))
    return float(np.mean((deg_hz[voiced] > 0) & (cents[voiced] <= PITCH_TOLERANCE_CENTS)))


def dnsmos_overall(ref: np.ndarray | None, deg: np.ndarray, rate: int) -> float:
    """DNSMOS P.835 overall quality (OVRL) of ``deg`` alone; ``ref`` is ignored.

    Signals shorter than 9.01 s are repeated by DNSMOS to that length.
    """
    model = dnsmos_model()
    x = np.clip(_at_rate(deg, rate, SPEECH_RATE_HZ), -1.0, 1.0).astype(np.float32)
    return float(model(x, SPEECH_RATE_HZ, False)["ovrl_mos"])


# ----- registry ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Metric:
    """A quality metric.

    Attributes:
        name: Key in results and on the command line.
        label: Column title; ViSQOL's names its mapping.
        higher_is_better: Direction of improvement.
        score: ``score(ref [T], deg [T], rate) -> float``.
        load: Loads the metric's models; raises :class:`MetricUnavailableError`.
        description: One line for reports.
    """

    name: str
    label: str
    higher_is_better: bool
    score: Callable[[np.ndarray, np.ndarray, int], float]
    load: Callable[[], object] | None
    description: str


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("visqol", f"ViSQOL speech ({VISQOL_SPEECH_MAPPING})", True, visqol_speech,
               lambda: visqol_api("speech"),
               f"ViSQOL v3 speech mode at 16 kHz, {VISQOL_SPEECH_MAPPING} mapping (C++ default), MOS-LQO 1-5"),
        Metric("visqol_audio", f"ViSQOL audio ({VISQOL_AUDIO_MAPPING})", True, visqol_audio,
               lambda: visqol_api("audio"),
               f"ViSQOL v3 audio mode at 48 kHz, {VISQOL_AUDIO_MAPPING} mapping, MOS-LQO 1-~4.75"),
        Metric("pesq", "PESQ-WB", True, pesq_wb, None, "PESQ wideband (P.862.2) at 16 kHz, MOS-LQO 1-4.64"),
        Metric("stoi", "STOI", True, stoi, None, "short-time objective intelligibility, 0-1"),
        Metric("sisdr", "SI-SDR dB", True, si_sdr, None, "scale-invariant signal-to-distortion ratio in dB"),
        Metric("mel", "mel L1", False, mel_distance, None,
               f"log-mel L1 distance averaged over STFT sizes {', '.join(map(str, MEL_WINDOWS))}; 0 is identical"),
        Metric("pitch", "pitch acc.", True, raw_pitch_accuracy, None,
               f"of the reference's voiced 10 ms frames (Praat), the share decoded within {PITCH_TOLERANCE_CENTS:g} "
               "cents, 0-1"),
        Metric("dnsmos", "DNSMOS OVRL", True, dnsmos_overall, dnsmos_model,
               "DNSMOS P.835 overall quality of the decoded signal alone (non-intrusive), 1-5"),
    )
}
DEFAULT_METRICS = ("visqol", "pesq", "stoi", "sisdr", "mel", "pitch", "dnsmos")


def get_metrics(names: list[str] | tuple[str, ...]) -> list[Metric]:
    """The metrics called ``names``, in order.

    Raises:
        InputError: On an unknown name.
    """
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise InputError(f"unknown metric {unknown[0]!r}; choose from {', '.join(METRICS)}")
    return [METRICS[n] for n in names]
