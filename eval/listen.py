"""The listening page: ``index.html`` beside an evaluation's results, to hear and see every system.

    results/
      index.html             summary table (metrics and band energies), rate-distortion plot, then per file:
      rate_distortion.png      the original, our model at each bitrate, ``latent`` and each baseline, each
      listen/NN-LABEL.flac     with an <audio> player, its measured kbps and scores,
      listen/NN-LABEL.png      and its spectrogram (one colour scale for the whole page)

Plain HTML and CSS with relative paths only, so the folder opens offline in
any browser and can be copied or served as it is. Every file is written
atomically. The files shown are chosen by :func:`choose_files`, spread over
speakers when the manifest names them.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from codec import audio, spectrogram
from codec.atomic import atomic_write
from eval.evaluate import LATENT, REFERENCE, Clip, system_label
from eval.report import BAND_NOTE, LATENT_NOTE, PLOT_FILE, band_cell, summary_columns, summary_rows, system_name

PAGE_FILE = "index.html"
ASSET_DIR = "listen"  # audio and spectrograms, relative to the page
DEFAULT_FILES = 6
FIGURE_SIZE_IN = (5.2, 2.0)  # spectrogram images: 520 x 200 pixels at FIGURE_DPI
FIGURE_DPI = 100

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 1400px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: middle; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.reference td { background: #f7fbf7; }
tr.latent td { background: #f7f7fb; }
img.plot { max-width: 100%; }
audio { width: 260px; }
.scores { font-size: 0.9em; line-height: 1.35; }
.note { font-size: 0.85em; color: #555; max-width: 1000px; }
"""


def choose_files(files: Sequence[Path], count: int, speakers: dict[Path, str] | None = None) -> list[Path]:
    """Up to ``count`` of ``files``, spread over speakers, in their original order.

    With ``speakers`` (file to speaker), speakers take turns in order of first
    appearance, each giving files evenly spaced over its own; without, files
    are evenly spaced over the list.
    """
    if count <= 0 or not files:
        return []
    groups: dict[str, list[Path]] = {}
    for index, path in enumerate(files):
        key = (speakers or {}).get(path, f"#{index}" if speakers else "")
        groups.setdefault(key, []).append(path)
    quota = {key: 0 for key in groups}
    left = min(count, len(files))
    while left:
        for key, members in groups.items():
            if left and quota[key] < len(members):
                quota[key] += 1
                left -= 1
    chosen = {path for key, members in groups.items() for path in _spread(members, quota[key])}
    return [path for path in files if path in chosen]


def _spread(items: list[Path], count: int) -> list[Path]:
    """``count`` items evenly spaced over ``items``, the first included."""
    if count <= 0:
        return []
    step = len(items) / count
    return [items[int(i * step)] for i in range(count)]


def write_page(report: dict[str, Any], clips: list[Clip], out_dir: Path,
               speakers: dict[Path, str] | None = None) -> Path:
    """Writes :data:`PAGE_FILE` and its audio and spectrograms into ``out_dir``.

    Args:
        report: The evaluation as :func:`eval.report.to_json` gives it (its
            rate-distortion plot is expected at ``out_dir / PLOT_FILE``).
        clips: The kept signals (:attr:`eval.evaluate.EvalResult.clips`).
        out_dir: The results folder.
        speakers: File to speaker, shown beside each file's name.

    Returns:
        The path of the page.
    """
    rate = report["eval_rate_hz"]
    assets = out_dir / ASSET_DIR
    assets.mkdir(parents=True, exist_ok=True)
    scale = spectrogram.colour_range_db([c.signals[REFERENCE] for c in clips], rate) if clips else (0.0, 0.0)
    sections = [_clip_section(report, clip, number, assets, scale, (speakers or {}).get(Path(clip.file)))
                for number, clip in enumerate(clips, start=1)]
    page = out_dir / PAGE_FILE
    text = _page(report, sections, plot_exists=(out_dir / PLOT_FILE).is_file())
    atomic_write(page, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return page


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")


def _write_spectrogram(path: Path, wav: Tensor, rate: int, scale: tuple[float, float], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=FIGURE_SIZE_IN)
    try:
        image = spectrogram.draw(ax, wav, rate, scale[0], scale[1], title)
        fig.colorbar(image, ax=ax, label="dB", pad=0.02)
        fig.tight_layout()
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=FIGURE_DPI))
    finally:
        plt.close(fig)


def _clip_section(report: dict[str, Any], clip: Clip, number: int, assets: Path, scale: tuple[float, float],
                  speaker: str | None) -> str:
    rate = report["eval_rate_hz"]
    rows = {system_label(r["system"], r["requested_kbps"]): r for r in report["rows"] if r["file"] == clip.file}
    lines = []
    for label, wav in clip.signals.items():
        stem = f"{number:02d}-{_slug(label)}"
        audio.save(assets / f"{stem}.flac", wav[None], rate)
        shown = system_label(system_name(rows[label]["system"]), rows[label]["requested_kbps"])
        _write_spectrogram(assets / f"{stem}.png", wav, rate, scale, f"{Path(clip.file).name}: {shown}")
        lines.append(_clip_row(report, rows[label], shown, f"{ASSET_DIR}/{stem}"))
    who = f" (speaker {html.escape(speaker)})" if speaker else ""
    head = "<tr><th>system</th><th>listen</th><th>measured kbps</th><th>scores</th><th>spectrogram</th></tr>"
    return (f'<section id="file-{number}">\n<h3>{number}. {html.escape(Path(clip.file).name)}{who}</h3>\n'
            f'<table class="clip">\n{head}\n' + "\n".join(lines) + "\n</table>\n</section>")


def _clip_row(report: dict[str, Any], row: dict[str, Any], shown: str, stem: str) -> str:
    scores = [f"{html.escape(m['label'])}: {_score(row['scores'].get(name))}" for name, m in report["metrics"].items()]
    bands = ", ".join(f"{html.escape(b)} {band_cell({'mean': row['bands_db'].get(b)})}" for b in report["bands"])
    kbps = "-" if row["kbps"] is None else f"{row['kbps']:.2f}"
    css = row["system"] if row["system"] in (REFERENCE, LATENT) else "system"
    name = html.escape(shown)
    return (f'<tr class="{css}"><td>{name}</td>'
            f'<td><audio controls preload="metadata" src="{stem}.flac"></audio></td>'
            f'<td class="num">{kbps}</td>'
            f'<td class="scores">{"<br>".join(scores)}<br>bands (dB): {bands}</td>'
            f'<td><img src="{stem}.png" alt="spectrogram of {name}" '
            f'width="{int(FIGURE_SIZE_IN[0] * FIGURE_DPI)}" height="{int(FIGURE_SIZE_IN[1] * FIGURE_DPI)}"></td></tr>')


def _score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _summary_html(report: dict[str, Any]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in summary_columns(report))
    body = []
    for cells in summary_rows(report):
        tds = [f"<td>{html.escape(cells[0])}</td>"] + [f'<td class="num">{html.escape(c)}</td>' for c in cells[1:]]
        body.append("<tr>" + "".join(tds) + "</tr>")
    return f'<table class="summary">\n<tr>{head}</tr>\n' + "\n".join(body) + "\n</table>"


def _page(report: dict[str, Any], sections: list[str], plot_exists: bool) -> str:
    model = report["model"]
    title = f"Listening: {model['name']}"
    trained = " (untrained preset)" if model.get("untrained_preset") else ""
    plot = f'<img class="plot" src="{PLOT_FILE}" alt="rate-distortion plot and band energy ratios">' if plot_exists else ""
    intro = (f"Model <code>{html.escape(str(model['spec']))}</code>{trained} (id {html.escape(str(model['model_id']))}, "
             f"{model['sample_rate']} Hz); data <code>{html.escape(report['data'])}</code>, {report['files']} files "
             f"compared at {report['eval_rate_hz']} Hz. Summary cells are the mean ± the half-width of a 95% "
             "confidence interval over files. Every signal below is at the evaluation rate; all spectrograms "
             "share one colour scale (dB, linear frequency up to Nyquist).")
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p>{intro}</p>
<h2>Summary</h2>
{plot}
{_summary_html(report)}
<p class="note">{html.escape(BAND_NOTE)}</p>
<p class="note">{html.escape(LATENT_NOTE).replace('`', '')}</p>
<h2>Files</h2>
{chr(10).join(sections) if sections else '<p>No files were kept for listening.</p>'}
</body>
</html>
"""
