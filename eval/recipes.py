"""Quality against compute: score the CPU-time snapshots of training runs and compare recipes.

    codec recipes RUN_DIR [RUN_DIR ...] --data DEV_CLIPS --out DIR [--kbps 1,2] [--limit 13]   (or python -m eval.recipes)

Each run trained with ``snapshot_every_cpu_s`` (``train/loop.py``) lists its
snapshots in ``RUN_DIR/snapshots/index.jsonl``: the CPU seconds of the
training process, the step and the saved generator. Every snapshot is scored
with :func:`eval.evaluate.evaluate` on the same files at each bitrate plus the
``latent`` row (decoder fed the unquantized latent), with ViSQOL (speech mode,
lattice mapping), PESQ-WB, mel distance and band energy ratios. Scores are
cached per snapshot in ``DIR/<run>/<snapshot>.json``, so running it again
scores only new snapshots. It prints one markdown table (a row per run and
snapshot) and writes ``DIR/quality_vs_cpu.png``.

Training throughput is audio seconds per CPU second (``step * batch *
segment / cpu_s``, read from the run's ``config.yaml``); inference speed is
encode + decode of 30 s of speech on one thread, in seconds of audio per CPU
second of the process.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from codec.atomic import write_json
from codec.errors import InputError
from codec.network.model import Codec
from codec.sources import list_audio
from eval.evaluate import evaluate, speakers_of
from eval.listen import choose_files

METRICS = ("visqol", "pesq", "mel", "pitch")
#: Bands whose level the decoder must keep (the recipe issue: within 3 dB from 0.5 to 4 kHz).
KEY_BANDS = ("0.5-1 kHz", "1-2 kHz", "2-4 kHz")


@dataclass(frozen=True)
class Snapshot:
    """One saved generator of a run: ``cpu_s`` CPU seconds and ``step`` steps into training."""

    run: str
    cpu_s: float
    step: int
    path: Path


def snapshots(run_dir: Path) -> list[Snapshot]:
    """The snapshots listed in ``run_dir/snapshots/index.jsonl``, in training order.

    Raises:
        InputError: If the run has no snapshot index.
    """
    index = run_dir / "snapshots" / "index.jsonl"
    if not index.is_file():
        raise InputError(f"{run_dir} has no {index.relative_to(run_dir)}; train it with snapshot_every_cpu_s set")
    records = [json.loads(line) for line in index.read_text().splitlines() if line.strip()]
    return [Snapshot(run_dir.name, float(r["cpu_s"]), int(r["step"]), run_dir / "snapshots" / r["snapshot"])
            for r in records]


def audio_s_per_cpu_s(run_dir: Path, snap: Snapshot) -> float:
    """Training throughput up to ``snap``: audio seconds seen per CPU second."""
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    return snap.step * config["batch_size"] * config["data"]["segment_s"] / max(snap.cpu_s, 1e-9)


def inference_speed(model: Codec, seconds: float = 30.0) -> float:
    """Encode + decode speed on one thread: seconds of noise-free speech-length audio per CPU second."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        wav = 0.1 * torch.randn(1, 1, int(seconds * model.sample_rate), generator=torch.Generator().manual_seed(0))
        model.decode(model.encode(wav[..., : model.sample_rate]))  # warm-up
        start = time.process_time()
        model.decode(model.encode(wav, bandwidth_kbps=model.bandwidths_kbps[-1]))
        return seconds / (time.process_time() - start)
    finally:
        torch.set_num_threads(threads)


def score_snapshot(snap: Snapshot, files: list[Path], bitrates_kbps: list[float], metrics: list[str],
                   cache: Path, speed_seconds: float = 30.0) -> dict[str, Any]:
    """The summary of :func:`eval.evaluate.evaluate` for one snapshot, cached in ``cache``."""
    if cache.is_file():
        return json.loads(cache.read_text())
    model = Codec.from_pretrained(snap.path)
    result = evaluate(model, files, bitrates_kbps, [], metrics, progress=False, model_spec=str(snap.path))
    record = {"run": snap.run, "cpu_s": snap.cpu_s, "step": snap.step, "summary": result.summary(),
              "inference_x_realtime": inference_speed(model, speed_seconds), "notes": result.notes}
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_json(cache, record)
    return record


def _row_of(summary: list[dict[str, Any]], kbps: float | None) -> dict[str, Any] | None:
    """The model's row at ``kbps`` in an evaluation summary, or its ``latent`` row for ``None``."""
    for row in summary:
        if kbps is None and row["system"] == "latent":
            return row
        if kbps is not None and row["system"] not in ("reference", "latent") and row["requested_kbps"] == kbps:
            return row
    return None


def _mean(row: dict[str, Any] | None, metric: str) -> float | None:
    return None if row is None else row["metrics"].get(metric, {}).get("mean")


def _ci(row: dict[str, Any] | None, metric: str) -> float | None:
    return None if row is None else row["metrics"].get(metric, {}).get("ci95")


def _fmt(value: float | None, ci: float | None = None, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if ci is None else f"{value:.{digits}f} ± {ci:.{digits}f}"


def table(records: list[dict[str, Any]], bitrates_kbps: list[float]) -> str:
    """One markdown row per run and snapshot: scores at each bitrate, the latent row's scores and bands."""
    head = ["run", "CPU min", "step", "audio s / CPU s", "x real time"]
    for kbps in bitrates_kbps:
        head += [f"ViSQOL {kbps:g}k", f"PESQ {kbps:g}k", f"mel {kbps:g}k", f"pitch {kbps:g}k"]
    head += ["ViSQOL latent", "PESQ latent", *(f"latent {b} dB" for b in KEY_BANDS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        cells = [r["run"], f"{r['cpu_s'] / 60:.0f}", str(r["step"]), f"{r['audio_s_per_cpu_s']:.2f}",
                 f"{r['inference_x_realtime']:.0f}"]
        for kbps in bitrates_kbps:
            row = _row_of(r["summary"], kbps)
            cells += [_fmt(_mean(row, "visqol"), _ci(row, "visqol")), _fmt(_mean(row, "pesq"), _ci(row, "pesq")),
                      _fmt(_mean(row, "mel")), _fmt(_mean(row, "pitch"))]
        latent = _row_of(r["summary"], None)
        cells += [_fmt(_mean(latent, "visqol")), _fmt(_mean(latent, "pesq"))]
        cells += [_fmt((latent or {}).get("bands_db", {}).get(b, {}).get("mean"), digits=1) for b in KEY_BANDS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(records: list[dict[str, Any]], kbps: float, path: Path) -> None:
    """ViSQOL and PESQ at ``kbps`` against CPU minutes, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from codec.atomic import atomic_write

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for run in dict.fromkeys(r["run"] for r in records):
        mine = sorted((r for r in records if r["run"] == run), key=lambda r: r["cpu_s"])
        minutes = [r["cpu_s"] / 60 for r in mine]
        for ax, metric in zip(axes, ("visqol", "pesq")):
            ax.plot(minutes, [_mean(_row_of(r["summary"], kbps), metric) for r in mine], marker="o", label=run)
    for ax, name in zip(axes, ("ViSQOL (speech, lattice)", "PESQ-WB")):
        ax.set_xlabel("training CPU minutes (one thread)")
        ax.set_ylabel(f"{name} at {kbps:g} kbps")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=90))
    plt.close(fig)


def compare(
    runs: list[Path],
    data: str,
    out: Path,
    bitrates: list[float],
    limit: int = 13,
    metrics: list[str] | tuple[str, ...] = METRICS,
    speed_seconds: float = 30.0,
    max_cpu_s: float | None = None,
) -> int:
    """Scores every snapshot of ``runs`` (cached in ``out``), prints the comparison table and writes the plot.

    Args:
        runs: Run directories trained with ``snapshot_every_cpu_s``.
        data: Folder or JSONL manifest of evaluation clips.
        out: Folder for the per-snapshot scores and ``quality_vs_cpu.png``.
        bitrates: Bitrates to score, in kbps.
        limit: Clips to score, spread over the manifest's speakers.
        metrics: Metric names (:data:`eval.metrics.METRICS`).
        speed_seconds: Seconds of audio timed for the inference speed.
        max_cpu_s: Snapshots past this many training CPU seconds are left out; None keeps all.

    Returns:
        The exit status, 0.
    """
    files = choose_files(list_audio(data), limit, speakers_of(data))  # spread over speakers
    records = []
    for run_dir in runs:
        run_dir = run_dir.expanduser()
        for snap in snapshots(run_dir):
            if max_cpu_s is not None and snap.cpu_s > max_cpu_s:
                continue
            cache = out / run_dir.name / f"{snap.path.name}.json"
            record = score_snapshot(snap, files, bitrates, list(metrics), cache, speed_seconds)
            record["audio_s_per_cpu_s"] = audio_s_per_cpu_s(run_dir, snap)
            records.append(record)
            print(f"scored {run_dir.name} at {snap.cpu_s / 60:.0f} CPU min (step {snap.step})", flush=True)
    print(table(records, bitrates))
    plot(records, 2.0 if 2.0 in bitrates else bitrates[-1], out / "quality_vs_cpu.png")
    print(f"plot: {out / 'quality_vs_cpu.png'}")
    return 0


if __name__ == "__main__":  # python -m eval.recipes: the same as `codec recipes`
    from codec.cli import run_module

    run_module("recipes")
