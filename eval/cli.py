"""The ``codec eval`` sub-command: score a model and classical codecs on a folder or manifest.

    codec eval --model preset:16khz --data clips/ --kbps 1,2,4 --baselines opus,codec2,gsm \\
        --metrics visqol,pesq,stoi --out results/ --limit 20 [--listen 6] [--no-html]

Writes ``results.json``, ``results.md``, ``rate_distortion.png`` and the
listening page ``index.html`` (with its audio and spectrograms in ``listen/``)
to ``--out``, and prints the markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from codec.errors import InputError
from codec.resolve import MODEL_HELP, load_model
from codec.sources import list_audio
from eval.baselines import BASELINES, parse_baselines
from eval.evaluate import EVAL_RATE_HZ, evaluate, speakers_of
from eval.listen import DEFAULT_FILES, choose_files, write_page
from eval.metrics import DEFAULT_METRICS, METRICS
from eval.report import summary_table, to_json, write_report


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--kbps must be comma-separated numbers like 0.5,1,2,4, got {text!r}") from None


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``eval`` sub-command."""
    p = subparsers.add_parser(
        "eval",
        help="score a model against Opus/codec2/GSM/Speex with ViSQOL, PESQ, STOI, SI-SDR, mel, DNSMOS",
        description="Encode and decode every file with the model at each bitrate, through its decoder without "
        "quantization (the 'latent' row) and with each baseline, score them, and write a JSON file, a markdown "
        "table, a rate-distortion plot and a listening page (index.html).",
    )
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--data", required=True, help="a folder of audio files or a JSONL manifest with a \"path\" key")
    p.add_argument("--kbps", default="0.5,1,2,4", help="our model's nominal bitrates (default: %(default)s)")
    p.add_argument("--baselines", default=",".join(BASELINES),
                   help="classical codecs, each NAME or NAME:KBPS (default: %(default)s; '' for none)")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                   help=f"metrics among {', '.join(METRICS)} (default: %(default)s)")
    p.add_argument("--out", default="eval-results", type=Path, help="output folder (default: %(default)s)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N files")
    p.add_argument("--eval-rate", type=int, default=EVAL_RATE_HZ, metavar="HZ",
                   help="rate at which every signal is compared; the energy bands reach its Nyquist frequency, so "
                   "give a higher-rate model its own rate (default: %(default)s)")
    p.add_argument("--html", action=argparse.BooleanOptionalAction, default=True,
                   help="write the listening page index.html with audio and spectrograms (default: on)")
    p.add_argument("--listen", type=int, default=DEFAULT_FILES, metavar="N",
                   help="files on the listening page, spread over the manifest's speakers (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Runs the evaluation and writes the report."""
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be at least 1, got {args.limit}")
    if args.eval_rate < 8000:
        raise InputError(f"--eval-rate must be at least 8000 Hz (the baselines' lowest rate), got {args.eval_rate}")
    if args.listen < 0:
        raise InputError(f"--listen must be 0 or more, got {args.listen}")
    loaded = load_model(args.model)
    files = list_audio(args.data, args.limit)
    speakers = speakers_of(args.data)
    keep = choose_files(files, args.listen, speakers) if args.html else []
    result = evaluate(loaded.codec, files, _floats(args.kbps), parse_baselines(args.baselines), _names(args.metrics),
                      eval_rate_hz=args.eval_rate, model_spec=args.model, tables=loaded.tables, keep=keep)
    report = to_json(result, str(args.data))
    paths = write_report(report, args.out)
    print(summary_table(report))
    for note in result.notes:
        print(f"note: {note}")
    print(f"wrote {paths['json']}, {paths['markdown']} and {paths['plot']}")
    if args.html:
        page = write_page(report, result.clips, args.out, speakers)
        print(f"listening page: {page.resolve()} (open it in a browser)")
    return 0
