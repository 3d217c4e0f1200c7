"""Writing an evaluation: JSON, a markdown table and a rate-distortion plot (with a band energy panel).

Every file is written atomically (temporary file, then rename), so an
interrupted run never leaves a partial report behind.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from codec.atomic import atomic_write, write_json
from eval.evaluate import LATENT, REFERENCE, EvalResult, system_label

JSON_FILE = "results.json"
MARKDOWN_FILE = "results.md"
PLOT_FILE = "rate_distortion.png"
PLOT_METRICS = ("visqol", "pesq")  # drawn against kbps when computed; else the first metric
BITRATE_NOTE = (
    "Measured kbps: for our codec, the code bits actually sent (codebooks x frames x log2(codebook size) "
    "over the duration; the last frame is padded, so slightly above nominal), and as entropy-coded kbps the "
    "bytes of the codes ANS-coded with the model's tables (codec.fileformat.entropy; uniform tables for untrained presets), "
    "without the .rvq file's header and chunk framing; for the baselines, the compressed packet bytes read "
    "back by ffprobe over the duration, container overhead (Ogg pages and header packets, the codec2 file "
    "header) excluded; `file_kbps` in the JSON includes it."
)
LATENT_NOTE = (
    f"`{LATENT}` is our decoder fed the encoder's output without quantization (same padding and cropping as "
    "encode and decode; no bitrate): the quality the quantizer could reach at best. Where it is no better "
    "than the highest bitrate, the encoder and decoder, not the codebooks, limit quality."
)
BAND_NOTE = (
    "Band columns: energy of the decoded signal against the reference in each band, in dB, averaged over "
    "files: 10 log10(E_decoded / E_reference), E the power of a Hann-window STFT (about 32 ms, hop a quarter "
    "window) summed over frames and over the bins inside the band; 0 dB keeps the band, negative is muffled, "
    "positive adds energy (noise, hiss)."
)


def to_json(result: EvalResult, data: str) -> dict[str, Any]:
    """The full result as plain JSON-ready data."""
    return {
        "model": result.model,
        "data": data,
        "files": len({r.file for r in result.rows}),
        "eval_rate_hz": result.eval_rate_hz,
        "metrics": {
            m.name: {"label": m.label, "higher_is_better": m.higher_is_better, "description": m.description}
            for m in result.metrics
        },
        "bitrate_note": BITRATE_NOTE,
        "bands": result.bands,
        "band_note": BAND_NOTE,
        "latent_note": LATENT_NOTE,
        "summary": result.summary(),
        "codebooks": [s.to_dict() for s in result.codebooks],
        "notes": result.notes,
        "rows": [asdict(r) for r in result.rows],
    }


def _cell(stats: dict[str, Any]) -> str:
    if stats["mean"] is None:
        return "n/a"
    if stats["ci95"] is None:
        return f"{stats['mean']:.3f}"
    return f"{stats['mean']:.3f} ± {stats['ci95']:.3f}"


def _kbps(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def band_cell(stats: dict[str, Any] | None) -> str:
    """A band's mean energy ratio, ``"-12.3"`` (dB), or ``"n/a"``."""
    return "n/a" if not stats or stats["mean"] is None else f"{stats['mean']:+.1f}"


def system_name(system: str) -> str:
    """The system as a table shows it: ``latent`` says that it has no quantizer."""
    return f"{LATENT} (no quantizer)" if system == LATENT else system


def summary_columns(report: dict[str, Any]) -> list[str]:
    """Column titles of :func:`summary_rows`."""
    head = ["system", "requested kbps", "measured kbps", "entropy-coded kbps"]
    head += [f"{m['label']} {'↑' if m['higher_is_better'] else '↓'}" for m in report["metrics"].values()]
    return head + [f"{band} dB" for band in report.get("bands", [])]


def summary_rows(report: dict[str, Any]) -> list[list[str]]:
    """Cells of the summary: one list per system and bitrate, metrics as mean ± 95% CI, bands as mean dB."""
    rows = []
    for s in report["summary"]:
        cells = [system_name(s["system"]), _kbps(s["requested_kbps"]), _kbps(s["kbps"]), _kbps(s.get("entropy_kbps"))]
        cells += [_cell(s["metrics"][name]) for name in report["metrics"]]
        cells += [band_cell(s.get("bands_db", {}).get(band)) for band in report.get("bands", [])]
        rows.append(cells)
    return rows


def summary_table(report: dict[str, Any]) -> str:
    """Markdown table: one line per system and bitrate, mean ± 95% CI per metric, mean dB per band."""
    head = summary_columns(report)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cells) + " |" for cells in summary_rows(report)]
    return "\n".join(lines)


def codebook_table(report: dict[str, Any]) -> str:
    """Markdown table of codebook usage per level."""
    lines = ["| level | entropy bits/code | perplexity | dead fraction | nominal bits/code |", "|---|---|---|---|---|"]
    for s in report["codebooks"]:
        lines.append(f"| {s['level']} | {s['entropy_bits']:.2f} | {s['perplexity']:.1f} | "
                     f"{s['dead_fraction']:.3f} | {s['bits_per_code']:.0f} |")
    return "\n".join(lines)


def to_markdown(report: dict[str, Any]) -> str:
    """The human-readable report."""
    model = report["model"]
    trained = " (untrained preset)" if model["untrained_preset"] else ""
    parts = [
        f"# Evaluation of {model['name']}{trained}",
        (f"Model `{model['spec']}` (id {model['model_id']}, {model['sample_rate']} Hz); data `{report['data']}`, "
        f"{report['files']} files compared at {report['eval_rate_hz']} Hz. Cells are the mean ± the half-width "
        f"of a 95% Student-t confidence interval over files; `{REFERENCE}` scores each signal against itself "
        "(each metric's ceiling)."),
        summary_table(report),
        "Metrics: " + "; ".join(f"**{m['label']}**: {m['description']}" for m in report["metrics"].values()) + ".",
        BAND_NOTE,
        LATENT_NOTE,
        BITRATE_NOTE,
    ]
    if report["codebooks"]:
        parts += ["## Codebook usage", codebook_table(report),
                  (f"An ideal per-codebook entropy coder would need {model['entropy_bound_kbps']:.2f} kbps "
                  "at the largest bitrate evaluated.")]
    if report["notes"]:
        parts += ["## Notes", "\n".join(f"- {n}" for n in report["notes"])]
    return "\n\n".join(parts) + "\n"


def plot_rate_distortion(report: dict[str, Any], path: Path) -> None:
    """PNG of metric against measured kbps, one line per system, 95% CI as error bars; then band energies.

    The last panel shows each system's mean band energy ratio (dB) per band.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [m for m in PLOT_METRICS if m in report["metrics"]] or list(report["metrics"])[:1]
    panels = len(names) + bool(report.get("bands"))
    fig, axes = plt.subplots(1, max(panels, 1), figsize=(6 * max(panels, 1), 4.5), squeeze=False)
    for ax, name in zip(axes[0], names):
        _plot_metric(ax, report, name)
    if report.get("bands"):
        _plot_bands(axes[0][-1], report)
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    finally:
        plt.close(fig)


def _plot_metric(ax: Any, report: dict[str, Any], name: str) -> None:
    lines: dict[str, list[tuple[float, float, float]]] = {}
    for s in report["summary"]:
        stats = s["metrics"][name]
        if stats["mean"] is None:
            continue
        if s["system"] == REFERENCE:
            ax.axhline(stats["mean"], color="gray", linestyle="--", label="reference (itself)")
        elif s["system"] == LATENT:
            ax.axhline(stats["mean"], color="black", linestyle=":", label=system_name(LATENT))
        elif s["kbps"] is not None:
            lines.setdefault(s["system"], []).append((s["kbps"], stats["mean"], stats["ci95"] or 0.0))
    for system, points in lines.items():
        kbps, mean, ci = zip(*sorted(points))
        ax.errorbar(kbps, mean, yerr=ci, marker="o", capsize=3, label=system)
    ax.set_xlabel("measured kbps")
    ax.set_ylabel(report["metrics"][name]["label"])
    ax.set_title(f"{report['metrics'][name]['label']} vs bitrate")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _plot_bands(ax: Any, report: dict[str, Any]) -> None:
    bands = report["bands"]
    ax.axhline(0.0, color="gray", linestyle="--", label="reference (itself)")
    for s in report["summary"]:
        if s["system"] == REFERENCE:
            continue
        means = [s["bands_db"][b]["mean"] for b in bands]
        if any(m is None for m in means):
            continue
        style = {"color": "black", "linestyle": ":"} if s["system"] == LATENT else {}
        ax.plot(range(len(bands)), means, marker="o", label=system_label(system_name(s["system"]),
                                                                          s["requested_kbps"]), **style)
    ax.set_xticks(range(len(bands)), bands, rotation=30, fontsize=8)
    ax.set_xlabel("band")
    ax.set_ylabel("energy vs reference (dB)")
    ax.set_title("band energy ratio (decoded / reference)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)


def write_report(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Writes ``report`` (from :func:`to_json`) as :data:`JSON_FILE`, :data:`MARKDOWN_FILE` and :data:`PLOT_FILE`.

    Returns:
        The path of each written file, keyed ``json``, ``markdown``, ``plot``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / JSON_FILE, "markdown": out_dir / MARKDOWN_FILE, "plot": out_dir / PLOT_FILE}
    write_json(paths["json"], report)
    atomic_write(paths["markdown"], lambda tmp: Path(tmp).write_text(to_markdown(report), encoding="utf-8"))
    plot_rate_distortion(report, paths["plot"])
    return paths
