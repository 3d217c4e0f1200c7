"""The evaluation loop: our codec and classical baselines scored by the same metrics.

    files --load, mono, resample to eval rate--> ref [T]
    ref --resample--> model rate --encode(all n_q)--> codes [1, n_q, F]
        --decode(first n codebooks)--> resample back --> deg [T]   (one per bitrate)
    ref --resample--> model rate --decoder(encoder(x))--> deg [T]  (``latent``: no quantizer)
    ref --ffmpeg round trip (eval.baselines)--> deg [T]            (one per setting)
    metrics(ref, deg), band energy ratios --> one row per (file, system, setting)

Codes of the first ``n`` codebooks are a prefix of the full codes (each level
quantizes the residual of the previous ones), so each file is encoded once.

Usage from Python::

    model = codec.resolve.load_codec("preset:16khz")
    result = evaluate(model, codec.sources.list_audio("clips/"), [1.0, 2.0], parse_baselines("opus"), ["pesq", "stoi"])
    result.summary()   # mean and 95% confidence interval per system, bitrate and metric
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from codec import audio
from codec.errors import InputError
from codec.fileformat.entropy import EntropyTables, encode_codes
from codec.network.model import Codec, EncodedAudio
from codec.sources import read_manifest
from eval.baselines import BaselineSetting, check_available, round_trip
from eval.codebooks import CodebookStats, CodeCounter, entropy_bound_kbps
from eval.metrics import (
    Metric,
    MetricError,
    MetricUnavailableError,
    band_edges_hz,
    band_energy_ratios_db,
    band_label,
    get_metrics,
)

EVAL_RATE_HZ = 16000  # every speech metric here is defined at (or accepts) 16 kHz
REFERENCE = "reference"  # the system name of the unprocessed signal (metric ceilings)
LATENT = "latent"  # the system name of our decoder fed the encoder's unquantized output (the quantizer's ceiling)


# ----- inputs -----------------------------------------------------------------------------------
def speakers_of(data: str | Path) -> dict[Path, str]:
    """The ``"speaker"`` field of each file of a JSONL manifest (empty for a folder or a manifest without it)."""
    data = Path(data).expanduser()
    if not (data.is_file() and data.suffix == ".jsonl"):
        return {}
    return {entry.path: str(entry.row["speaker"]) for entry in read_manifest(data)
            if entry.row.get("speaker") is not None}


# ----- results ----------------------------------------------------------------------------------
@dataclass
class Row:
    """The scores of one file through one system at one setting.

    Attributes:
        file: Source file.
        system: ``reference``, ``latent``, the model's name, or a baseline codec name.
        requested_kbps: Bitrate asked for (``None`` for the reference and ``latent``).
        kbps: Measured bitrate: codebook bits (ours) or payload bytes (baselines).
        scores: Metric name to value (``None`` where the metric failed).
        extra: Other measurements (``file_kbps``, ``delay_ms``).
        bands_db: Band name to energy ratio in dB against the reference
            (:func:`eval.metrics.band_energy_ratios_db`).
    """

    file: str
    system: str
    requested_kbps: float | None
    kbps: float | None
    scores: dict[str, float | None]
    extra: dict[str, float] = field(default_factory=dict)
    bands_db: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``"reference"``, ``"latent"`` or ``"opus 6 kbps"``-style name of the system and setting."""
        return system_label(self.system, self.requested_kbps)


def system_label(system: str, requested_kbps: float | None) -> str:
    """``system`` alone without a bitrate, else ``"system N kbps"``."""
    return system if requested_kbps is None else f"{system} {requested_kbps:g} kbps"


@dataclass
class Clip:
    """The signals of one file kept for listening.

    Attributes:
        file: Source file (as in :attr:`Row.file`).
        signals: :attr:`Row.label` to the signal ``[T]`` at the evaluation
            rate, the reference first.
    """

    file: str
    signals: dict[str, Tensor]


@dataclass
class EvalResult:
    """Everything an evaluation produced.

    Attributes:
        rows: One :class:`Row` per file, system and setting.
        metrics: The metrics computed, in order.
        notes: Skipped metrics, failed scores and other remarks for the report.
        codebooks: Codebook usage of our model over the files (all requested codebooks).
        model: Name, id, rate and origin of the model.
        eval_rate_hz: Rate at which every signal was compared.
        clips: Signals of the files asked to be kept (for a listening page).
    """

    rows: list[Row]
    metrics: list[Metric]
    notes: list[str]
    codebooks: list[CodebookStats]
    model: dict[str, Any]
    eval_rate_hz: int
    clips: list[Clip] = field(default_factory=list)

    @property
    def bands(self) -> list[str]:
        """Names of the energy bands at :attr:`eval_rate_hz`, low to high."""
        return [band_label(lo, hi) for lo, hi in band_edges_hz(self.eval_rate_hz)]

    def summary(self) -> list[dict[str, Any]]:
        """Per system and requested bitrate: mean measured kbps, each metric's and each band's mean and 95% CI.

        The interval is Student's t on the per-file scores: ``mean +- t(0.975, n-1) * sd / sqrt(n)``
        (``None`` with fewer than two files). Band energy ratios are averaged in dB.
        """
        groups: dict[tuple[str, float | None], list[Row]] = {}
        for row in self.rows:
            groups.setdefault((row.system, row.requested_kbps), []).append(row)
        out = []
        for (system, requested), rows in groups.items():
            kbps = [r.kbps for r in rows if r.kbps is not None]
            out.append({
                "system": system,
                "requested_kbps": requested,
                "kbps": statistics.fmean(kbps) if kbps else None,
                "files": len(rows),
                **_mean_extra(rows),
                "metrics": {m.name: mean_ci([r.scores.get(m.name) for r in rows]) for m in self.metrics},
                "bands_db": {b: mean_ci([r.bands_db.get(b) for r in rows]) for b in self.bands},
            })
        return out


def _mean_extra(rows: list[Row]) -> dict[str, float]:
    keys = sorted({k for r in rows for k in r.extra})
    return {k: statistics.fmean(r.extra[k] for r in rows if k in r.extra) for k in keys}


def mean_ci(values: list[float | None]) -> dict[str, float | int | None]:
    """``{"mean", "ci95", "n"}`` of the finite values (``ci95`` is the half-width of a t interval)."""
    from scipy.stats import t as student_t

    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return {"mean": None, "ci95": None, "n": 0}
    mean = statistics.fmean(finite)
    if len(finite) < 2:
        return {"mean": mean, "ci95": None, "n": 1}
    half = float(student_t.ppf(0.975, len(finite) - 1)) * statistics.stdev(finite) / math.sqrt(len(finite))
    return {"mean": mean, "ci95": half, "n": len(finite)}


# ----- the loop ---------------------------------------------------------------------------------
def available_metrics(names: list[str], notes: list[str]) -> list[Metric]:
    """The metrics among ``names`` whose models load; a note for each one skipped."""
    usable = []
    for metric in get_metrics(names):
        try:
            if metric.load is not None:
                metric.load()
        except MetricUnavailableError as e:
            notes.append(f"{metric.name} skipped: {e}")
            continue
        usable.append(metric)
    return usable


def score(metrics: list[Metric], ref: torch.Tensor, deg: torch.Tensor, rate: int, where: str,
          notes: list[str]) -> dict[str, float | None]:
    """Every metric of ``deg`` [T] against ``ref`` [T]; a failure or a NaN gives ``None`` and a note."""
    ref_np, deg_np = ref.numpy(), deg.numpy()
    out: dict[str, float | None] = {}
    for metric in metrics:
        try:
            value = metric.score(ref_np, deg_np, rate)
            if not math.isfinite(value):
                raise MetricError(f"the score is {value} (a silent signal?)")
            out[metric.name] = value
        except MetricError as e:
            out[metric.name] = None
            notes.append(f"{metric.name} failed on {where}: {e}")
    return out


@dataclass
class CodecTrip:
    """Our codec at one bitrate on one signal.

    Attributes:
        requested_kbps: Nominal bitrate asked for.
        kbps: Code bits sent, ``n * F * log2(K)`` over the duration, with
            ``F = ceil(T / hop)`` frames (so slightly above nominal).
        entropy_kbps: Bytes of the ANS-coded codes (:mod:`codec.fileformat.entropy`, the
            model's tables) over the duration; ``None`` without tables.
        decoded: Decoded signal ``[T]`` at the evaluation rate.
    """

    requested_kbps: float
    kbps: float
    entropy_kbps: float | None
    decoded: torch.Tensor


def codec_round_trips(model: Codec, ref: torch.Tensor, rate: int, bitrates_kbps: list[float],
                      counter: CodeCounter, tables: EntropyTables | None = None) -> list[CodecTrip]:
    """Our codec on ``ref`` [T] at each bitrate, from one encode with the most codebooks."""
    n_qs = [model.n_q_for_bandwidth(kbps) for kbps in bitrates_kbps]
    wav = audio.resample(ref, rate, model.sample_rate)[None, None]  # [1, 1, T']
    encoded = model.encode(wav, bandwidth_kbps=bitrates_kbps[n_qs.index(max(n_qs))])
    counter.update(encoded.codes, encoded.frame_lengths)
    duration_s = ref.shape[-1] / rate
    out = []
    for kbps, n_q in zip(bitrates_kbps, n_qs):
        prefix = EncodedAudio(encoded.codes[:, :n_q], encoded.lengths, encoded.frame_lengths)
        decoded = audio.resample(model.decode(prefix)[0, 0], model.sample_rate, rate)
        bits = n_q * int(encoded.frame_lengths[0]) * model.config.bits_per_codebook
        entropy_kbps = None
        if tables is not None:
            codes = prefix.codes[..., : int(encoded.frame_lengths[0])].cpu().numpy()  # [1, n_q, F]
            blocks = encode_codes(codes, tables, model.config.codebook_size)
            entropy_kbps = sum(len(b) for b in blocks) * 8 / duration_s / 1000
        out.append(CodecTrip(kbps, bits / duration_s / 1000, entropy_kbps, audio.fit_length(decoded, ref.shape[-1])))
    return out


def latent_round_trip(model: Codec, ref: Tensor, rate: int) -> Tensor:
    """Our decoder on the encoder's unquantized output of ``ref`` [T]; ``[T]`` at ``rate``."""
    wav = audio.resample(ref, rate, model.sample_rate)[None, None]  # [1, 1, T']
    decoded = audio.resample(model.decode_unquantized(wav)[0, 0], model.sample_rate, rate)
    return audio.fit_length(decoded, ref.shape[-1])


def evaluate(
    model: Codec,
    files: list[Path],
    bitrates_kbps: list[float],
    baselines: list[BaselineSetting],
    metric_names: list[str] | tuple[str, ...],
    eval_rate_hz: int = EVAL_RATE_HZ,
    progress: bool = True,
    model_spec: str | None = None,
    tables: EntropyTables | None = None,
    keep: Collection[Path] = (),
) -> EvalResult:
    """Scores ``model`` at each bitrate, and each baseline setting, on every file.

    Args:
        model: The codec (in eval mode).
        files: Audio files; each is mixed to mono and resampled to ``eval_rate_hz``.
        bitrates_kbps: Nominal bitrates of ``model`` to test.
        baselines: Classical codec settings (see :func:`eval.baselines.parse_baselines`).
        metric_names: Metrics to compute (see :data:`eval.metrics.METRICS`).
        eval_rate_hz: Rate at which signals are compared.
        progress: Show a progress bar over files.
        model_spec: How the model was named (recorded in the result).
        tables: The model's entropy tables; when given, rows of our codec also
            carry ``entropy_kbps``, the size of the ANS-coded codes.
        keep: Files among ``files`` whose signals (reference and every
            system's output) are kept in :attr:`EvalResult.clips`.

    Returns:
        An :class:`EvalResult` with a ``reference`` row (each signal against
        itself: the metrics' ceilings), rows for our model at each bitrate and
        ``latent`` (its decoder fed the unquantized latent; only when
        ``bitrates_kbps`` is given), and rows for the baselines.

    Raises:
        BandwidthError: If a bitrate is not one the model supports.
        BaselineError: If ffmpeg or a baseline's encoder is missing.
        InputError: On unreadable files or unknown metrics.
    """
    if not bitrates_kbps and not baselines:
        raise InputError("nothing to evaluate: give at least one bitrate or one baseline")
    for kbps in bitrates_kbps:
        model.n_q_for_bandwidth(kbps)  # fail before the loop on an unsupported bitrate
    for setting in baselines:
        check_available(setting)
    notes: list[str] = []
    metrics = available_metrics(list(metric_names), notes)
    counter = CodeCounter(model.config.codebook_size)
    rows: list[Row] = []
    clips: list[Clip] = []
    keep = set(keep)
    for path in tqdm(files, desc="evaluating", unit="file", disable=not progress):
        signals: dict[str, Tensor] = {}
        rows.extend(_evaluate_file(model, path, bitrates_kbps, baselines, metrics, eval_rate_hz, counter, notes,
                                   tables, signals))
        if path in keep:
            clips.append(Clip(str(path), signals))
    codebooks = counter.stats() if bitrates_kbps else []
    info = _model_info(model, model_spec)
    if codebooks:
        info["entropy_bound_kbps"] = entropy_bound_kbps(codebooks, model.frame_rate_hz)
    return EvalResult(rows, metrics, notes, codebooks, info, eval_rate_hz, clips)


def _evaluate_file(model: Codec, path: Path, bitrates_kbps: list[float], baselines: list[BaselineSetting],
                   metrics: list[Metric], rate: int, counter: CodeCounter, notes: list[str],
                   tables: EntropyTables | None, signals: dict[str, Tensor]) -> list[Row]:
    """Rows of one file; ``signals`` receives each row's signal [T] under its :attr:`Row.label`."""
    ref = audio.load(path, target_rate=rate, mono=True)[0][0]  # [T]
    name = str(path)
    rows: list[Row] = []

    def add(row: Row, deg: Tensor) -> None:
        row.scores = score(metrics, ref, deg, rate, f"{name} ({row.label})", notes)
        row.bands_db = band_energy_ratios_db(ref.numpy(), deg.numpy(), rate)
        rows.append(row)
        signals[row.label] = deg

    add(Row(name, REFERENCE, None, None, {}), ref)
    if bitrates_kbps:
        for trip in codec_round_trips(model, ref, rate, bitrates_kbps, counter, tables):
            extra = {} if trip.entropy_kbps is None else {"entropy_kbps": trip.entropy_kbps}
            add(Row(name, model.config.name, trip.requested_kbps, trip.kbps, {}, extra), trip.decoded)
        add(Row(name, LATENT, None, None, {}), latent_round_trip(model, ref, rate))
    for setting in baselines:
        trip = round_trip(ref, rate, setting)
        extra = {"file_kbps": trip.file_kbps, "delay_ms": trip.delay_ms}
        add(Row(name, setting.codec, setting.requested_kbps, trip.kbps, {}, extra), trip.decoded)
    return rows


def _model_info(model: Codec, spec: str | None) -> dict[str, Any]:
    return {
        "spec": spec,
        "name": model.config.name,
        "model_id": model.model_id,
        "sample_rate": model.sample_rate,
        "frame_rate_hz": model.frame_rate_hz,
        "untrained_preset": bool(spec and spec.startswith("preset:")),
        "parameters": sum(p.numel() for p in model.parameters()),
    }

