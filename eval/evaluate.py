"""The evaluation loop: our codec and classical baselines scored by the same metrics.

    files --load, mono, resample to eval rate--> ref [T]
    ref --resample--> model rate --encode(all n_q)--> codes [1, n_q, F]
        --decode(first n codebooks)--> resample back --> deg [T]   (one per bitrate)
    ref --ffmpeg round trip (eval.baselines)--> deg [T]            (one per setting)
    metrics(ref, deg) --> one row per (file, system, setting)

Codes of the first ``n`` codebooks are a prefix of the full codes (each level
quantizes the residual of the previous ones), so each file is encoded once.

Usage from Python::

    model = load_model("preset:16khz")
    result = evaluate(model, list_audio("clips/"), [1.0, 2.0], parse_baselines("opus"), ["pesq", "stoi"])
    result.summary()   # mean and 95% confidence interval per system, bitrate and metric
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from codec import audio, compress
from codec.entropy import EntropyTables, encode_codes
from codec.errors import InputError
from codec.model import Codec, EncodedAudio
from codec.presets import PRESETS
from eval.baselines import BaselineSetting, check_available, fit_length, round_trip
from eval.codebooks import CodebookStats, CodeCounter, entropy_bound_kbps
from eval.metrics import Metric, MetricError, MetricUnavailableError, get_metrics

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
EVAL_RATE_HZ = 16000  # every speech metric here is defined at (or accepts) 16 kHz
REFERENCE = "reference"  # the system name of the unprocessed signal (metric ceilings)
SEED = 0  # seeds the random initialisation of untrained presets


# ----- inputs -----------------------------------------------------------------------------------
def load_model_and_tables(spec: str) -> tuple[Codec, EntropyTables]:
    """A model and its entropy tables from a saved directory, a bundled name, or ``preset:NAME``.

    ``preset:NAME`` builds an untrained model of a preset architecture
    (``16khz``, ``24khz``, ``tiny``) with a fixed seed and uniform tables, so
    the harness runs before any model is trained. Other models come with the
    tables saved beside their weights (uniform if none), as ``codec compress`` uses them.

    Raises:
        ModelNotFoundError: If nothing matches ``spec``.
        InputError: On an unknown preset name.
    """
    if spec.startswith("preset:"):
        name = spec.split(":", 1)[1]
        if name not in PRESETS:
            raise InputError(f"unknown preset {name!r} in {spec!r}; choose from {', '.join(PRESETS)}")
        torch.manual_seed(SEED)
        model = Codec(PRESETS[name]()).eval()
        return model, EntropyTables.uniform(model.config.n_q, model.config.codebook_size)
    loaded = compress.load_model(spec)
    return loaded.codec, loaded.tables


def load_model(spec: str) -> Codec:
    """The model of :func:`load_model_and_tables`."""
    return load_model_and_tables(spec)[0]


def list_audio(data: str | Path, limit: int | None = None) -> list[Path]:
    """Audio files of a folder (searched recursively, sorted) or of a JSONL manifest's ``"path"`` fields.

    Relative manifest paths are resolved against the manifest's folder.

    Raises:
        InputError: If ``data`` does not exist, a manifest line is malformed, or no file is found.
    """
    data = Path(data)
    if data.is_dir():
        files = sorted(p for p in data.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
    elif data.is_file() and data.suffix == ".jsonl":
        files = _manifest_paths(data)
    else:
        raise InputError(f"{data} is neither a folder of audio files nor a .jsonl manifest")
    if not files:
        raise InputError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) found in {data}")
    return files[:limit] if limit else files


def _manifest_paths(manifest: Path) -> list[Path]:
    paths = []
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            path = Path(json.loads(line)["path"])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise InputError(f"{manifest}:{number}: expected a JSON object with a \"path\" key") from None
        paths.append(path if path.is_absolute() else manifest.parent / path)
    return paths


# ----- results ----------------------------------------------------------------------------------
@dataclass
class Row:
    """The scores of one file through one system at one setting.

    Attributes:
        file: Source file.
        system: ``reference``, the model's name, or a baseline codec name.
        requested_kbps: Bitrate asked for (``None`` for the reference).
        kbps: Measured bitrate: codebook bits (ours) or payload bytes (baselines).
        scores: Metric name to value (``None`` where the metric failed).
        extra: Other measurements (``file_kbps``, ``delay_ms``).
    """

    file: str
    system: str
    requested_kbps: float | None
    kbps: float | None
    scores: dict[str, float | None]
    extra: dict[str, float] = field(default_factory=dict)


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
    """

    rows: list[Row]
    metrics: list[Metric]
    notes: list[str]
    codebooks: list[CodebookStats]
    model: dict[str, Any]
    eval_rate_hz: int

    def summary(self) -> list[dict[str, Any]]:
        """Per system and requested bitrate: mean measured kbps and each metric's mean and 95% CI.

        The interval is Student's t on the per-file scores: ``mean +- t(0.975, n-1) * sd / sqrt(n)``
        (``None`` with fewer than two files).
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
        entropy_kbps: Bytes of the ANS-coded codes (:mod:`codec.entropy`, the
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
        out.append(CodecTrip(kbps, bits / duration_s / 1000, entropy_kbps, fit_length(decoded, ref.shape[-1])))
    return out


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

    Returns:
        An :class:`EvalResult` with a ``reference`` row (each signal against
        itself: the metrics' ceilings), rows for our model and the baselines.

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
    for path in tqdm(files, desc="evaluating", unit="file", disable=not progress):
        rows.extend(_evaluate_file(model, path, bitrates_kbps, baselines, metrics, eval_rate_hz, counter, notes,
                                   tables))
    codebooks = counter.stats() if bitrates_kbps else []
    info = _model_info(model, model_spec)
    if codebooks:
        info["entropy_bound_kbps"] = entropy_bound_kbps(codebooks, model.frame_rate_hz)
    return EvalResult(rows, metrics, notes, codebooks, info, eval_rate_hz)


def _evaluate_file(model: Codec, path: Path, bitrates_kbps: list[float], baselines: list[BaselineSetting],
                   metrics: list[Metric], rate: int, counter: CodeCounter, notes: list[str],
                   tables: EntropyTables | None) -> list[Row]:
    ref = audio.load(path, target_rate=rate, mono=True)[0][0]  # [T]
    name = str(path)
    rows = [Row(name, REFERENCE, None, None, score(metrics, ref, ref, rate, f"{name} ({REFERENCE})", notes))]
    if bitrates_kbps:
        for trip in codec_round_trips(model, ref, rate, bitrates_kbps, counter, tables):
            where = f"{name} ({model.config.name} {trip.requested_kbps:g} kbps)"
            extra = {} if trip.entropy_kbps is None else {"entropy_kbps": trip.entropy_kbps}
            scores = score(metrics, ref, trip.decoded, rate, where, notes)
            rows.append(Row(name, model.config.name, trip.requested_kbps, trip.kbps, scores, extra))
    for setting in baselines:
        trip = round_trip(ref, rate, setting)
        scores = score(metrics, ref, trip.decoded, rate, f"{name} ({setting.label})", notes)
        extra = {"file_kbps": trip.file_kbps, "delay_ms": trip.delay_ms}
        rows.append(Row(name, setting.codec, setting.requested_kbps, trip.kbps, scores, extra))
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

