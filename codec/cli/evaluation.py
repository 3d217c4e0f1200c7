"""The evaluation commands, run from a checkout (:mod:`eval` beside ``codec/``).

    codec eval --model M --data clips/ [--kbps 1,2,4] [--baselines opus,codec2,gsm] [--metrics visqol,pesq]
               [--out results/] [--limit 20] [--eval-rate HZ] [--listen 6] [--no-html]
    codec codebooks --data DIR_OR_MANIFEST [--model M] [--limit N] [--json FILE]
    codec phonetic --model M [--model M2 ...] [--aligned aligned.jsonl] [--dev dev.jsonl] [--limit N]
    codec bench [--model preset:16khz] [--seconds 60] [--threads 1,2] [--cli-seconds 600] [--memory 10,600,3600]
    codec bench-bitstream [--model DIR] [--data tests/data] [--memory-minutes 10]
    codec demo [FILE ...] [--model M] [--kbps 2,4] [--opus 6,8] [--out demo-results]
    codec recipes RUN_DIR [RUN_DIR ...] --data DEV_CLIPS --out DIR [--kbps 1,2] [--limit 13]
    codec phase-recovery --data DEV_CLIPS [--limit 4] [--hops 160,320] [--lambdas 0.18] [--heap]
    codec pitch-probe --model M [--model M2 ...] --train TRAIN --dev DEV [--kbps 0,2]
    codec decompose --model M [--model M2 ...] --data DEV_CLIPS [--kbps 2,0] [--limit 13]

``python -m eval.codebooks``, ``eval.phonetic``, ``eval.bench``,
``eval.bench_bitstream``, ``eval.demo`` (``make demo``), ``eval.recipes``,
``eval.phase_recovery``, ``eval.pitch_probe`` and ``eval.decompose`` run the same commands. ``codec eval``
writes ``results.json``, ``results.md``, ``rate_distortion.png`` and the listening page
``index.html`` (its audio and spectrograms in ``listen/``) to ``--out`` and
prints the markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from codec.errors import InputError
from codec.resolve import DEFAULT_MODEL, MODEL_HELP


def numbers(text: str, flag: str, kind: type = float) -> list:
    """The comma-separated numbers of a flag's value (``"1,2,4"``); empty items are skipped.

    Raises:
        InputError: Naming the flag, on an item that is not a number.
    """
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{flag} must be comma-separated numbers like 0.5,1,2,4, got {text!r}") from None


def names(text: str) -> list[str]:
    """The comma-separated names of a flag's value, stripped; empty items are skipped."""
    return [x.strip() for x in text.split(",") if x.strip()]


def _eval(args: argparse.Namespace) -> int:
    from codec.resolve import load_model
    from codec.sources import check_limit, list_audio
    from eval.baselines import parse_baselines
    from eval.evaluate import evaluate, speakers_of
    from eval.listen import choose_files, write_page
    from eval.report import summary_table, to_json, write_report

    check_limit(args.limit)
    if args.eval_rate < 8000:
        raise InputError(f"--eval-rate must be at least 8000 Hz (the baselines' lowest rate), got {args.eval_rate}")
    if args.listen < 0:
        raise InputError(f"--listen must be 0 or more, got {args.listen}")
    loaded = load_model(args.model)
    files = list_audio(args.data, args.limit)
    speakers = speakers_of(args.data)
    keep = choose_files(files, args.listen, speakers) if args.html else []
    result = evaluate(loaded.codec, files, numbers(args.kbps, "--kbps"), parse_baselines(args.baselines),
                      names(args.metrics), eval_rate_hz=args.eval_rate, model_spec=args.model, tables=loaded.tables,
                      keep=keep)
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


def _register_eval(subparsers: argparse._SubParsersAction) -> None:
    from eval.baselines import BASELINES
    from eval.evaluate import EVAL_RATE_HZ
    from eval.listen import DEFAULT_FILES
    from eval.metrics import DEFAULT_METRICS, METRICS

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
    p.set_defaults(func=_eval)


def _codebooks(args: argparse.Namespace) -> int:
    from eval.codebooks import report

    return report(args.model, args.data, args.limit, args.json, args.quiet)


def _register_codebooks(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("codebooks", help="usage, entropy and dead codes of each codebook on a dataset",
                              description="Usage, entropy and dead codes of each codebook on a dataset.")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"{MODEL_HELP} (default: %(default)s)")
    p.add_argument("--data", required=True, help="a folder of audio files or a JSONL manifest")
    p.add_argument("--limit", type=int, help="only the first N files")
    p.add_argument("--json", type=Path, help="also write the statistics to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_codebooks)


def _phonetic(args: argparse.Namespace) -> int:
    from eval.phonetic import compare

    return compare(args.model, args.aligned, args.dev, args.alignments, args.limit, args.per_speaker, args.json,
                   args.quiet)


def _register_phonetic(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("phonetic", help="phone purity, PNMI and a speaker probe of each codebook",
                              description="Phone purity, PNMI and a speaker probe of each codebook.")
    p.add_argument("--model", action="append", required=True,
                   help="a saved model directory, a bundled name or preset:16khz (untrained); repeat to compare")
    p.add_argument("--aligned", type=Path, default=Path("~/data/rvq/aligned.jsonl").expanduser(),
                   help="JSONL manifest of English speech with \"text\" transcripts (default: %(default)s)")
    p.add_argument("--alignments", type=Path,
                   help="phone alignment cache (default: beside --aligned, ending in .phones.jsonl)")
    p.add_argument("--dev", type=Path, default=Path("~/data/rvq/dev.jsonl").expanduser(),
                   help="JSONL manifest with a \"speaker\" key, for the speaker probe (default: %(default)s)")
    p.add_argument("--limit", type=int, help="use only the first N files of --aligned")
    p.add_argument("--per-speaker", type=int, default=32,
                   help="utterances per speaker in the speaker probe (default: %(default)s)")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_phonetic)


def _voices(args: argparse.Namespace) -> int:
    from eval.voices import build, read_texts

    manifest = build(read_texts(args.texts, args.limit), args.out, quiet=args.quiet)
    print(f"wrote {manifest}")
    return 0


def _register_voices(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("voices", help="the same sentences in several festival voices, for the speaker probe",
                              description="Synthesise each text of a manifest in every English festival voice on the "
                                          "machine: a speaker probe (codec phonetic --dev) that the words cannot pass.")
    p.add_argument("--texts", type=Path, default=Path("~/data/rvq/aligned.jsonl").expanduser(),
                   help="JSONL manifest whose rows have a \"text\" (default: %(default)s)")
    p.add_argument("--limit", type=int, help="only the first N distinct texts")
    p.add_argument("--out", type=Path, required=True, help="folder for the WAVs and voices.jsonl")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_voices)


def _bench(args: argparse.Namespace) -> int:
    from eval.bench import run_all

    threads = numbers(args.threads, "--threads", int)
    return run_all(args.model, args.data, args.seconds, threads, args.cli_seconds, numbers(args.memory, "--memory"),
                   istft=args.istft)


def _register_bench(subparsers: argparse._SubParsersAction) -> None:
    from eval.bench import DEFAULT_DATA, REFERENCE_SPEC

    p = subparsers.add_parser(
        "bench", help="speed, streaming latency, start-up and memory, beside libopus and the 24 kHz preset",
        description="Speed, streaming latency, start-up and memory of the codec, beside libopus and the "
        "EnCodec-sized preset.")
    p.add_argument("--model", default="preset:16khz",
                   help="saved directory, bundled name or preset:NAME (default: %(default)s); "
                   f"{REFERENCE_SPEC} and libopus are measured beside it")
    p.add_argument("--seconds", type=float, default=60.0,
                   help="seconds of speech to time, cut into 10 s segments (default: %(default)s)")
    p.add_argument("--threads", default="1,2", help="torch thread counts to try (default: %(default)s)")
    p.add_argument("--data", default=str(DEFAULT_DATA),
                   help="folder or JSONL manifest of speech clips (default: tests/data)")
    p.add_argument("--cli-seconds", type=float, default=600.0,
                   help="length of the file timed through the command line, 0 to skip (default: %(default)s)")
    p.add_argument("--memory", default="10,600,3600",
                   help="input seconds for the peak-memory runs, '' to skip (default: %(default)s)")
    p.add_argument("--istft", action=argparse.BooleanOptionalAction, default=True,
                   help="also measure --model with the speech recipes' iSTFT decoder (default: on)")
    p.set_defaults(func=_bench)


def _bench_bitstream(args: argparse.Namespace) -> int:
    from eval.bench_bitstream import run

    return run(args.model, args.data, args.memory_minutes)


def _register_bench_bitstream(subparsers: argparse._SubParsersAction) -> None:
    from eval.bench_bitstream import DATA_DIR

    p = subparsers.add_parser("bench-bitstream", help="measured bitrate, coding speed and memory of the file format",
                              description="Measured bitrate, coding speed and memory of the compressed file format.")
    p.add_argument("--model", default=None, help="model directory (default: an untrained codec_16khz)")
    p.add_argument("--data", type=Path, default=DATA_DIR, help="directory of WAV clips (default: tests/data)")
    p.add_argument("--memory-minutes", type=float, default=10.0, help="long file length (0: skip)")
    p.set_defaults(func=_bench_bitstream)


def _demo(args: argparse.Namespace) -> int:
    from eval.demo import demo

    return demo(args.files, args.model, numbers(args.kbps, "--kbps"), numbers(args.opus, "--opus", int), args.out)


def _register_demo(subparsers: argparse._SubParsersAction) -> None:
    from eval.demo import CLIPS_DIR

    p = subparsers.add_parser("demo", help="compress and decompress real speech next to Opus, with a listening page",
                              description="Compress and decompress real speech with a model, next to Opus: "
                              "measured bitrate, ViSQOL and PESQ, and a listening page.")
    p.add_argument("files", nargs="*", type=Path, help=f"speech files (default: the development clips in {CLIPS_DIR})")
    p.add_argument("--model", default=None, help=f"{MODEL_HELP} (default: {DEFAULT_MODEL})")
    p.add_argument("--kbps", default="2,4", help="our bitrates")
    p.add_argument("--opus", default="6,8", help="Opus bitrates for comparison")
    p.add_argument("--out", type=Path, default=Path("demo-results"),
                   help="folder of the listening page index.html (default: %(default)s)")
    p.set_defaults(func=_demo)


def _recipes(args: argparse.Namespace) -> int:
    from eval.recipes import compare

    return compare(args.runs, args.data, args.out, numbers(args.kbps, "--kbps"), args.limit, names(args.metrics),
                   args.speed_seconds, args.max_cpu_s)


def _register_recipes(subparsers: argparse._SubParsersAction) -> None:
    from eval.recipes import METRICS

    p = subparsers.add_parser("recipes", help="score the CPU-time snapshots of training runs and compare recipes",
                              description="Quality against compute: score the CPU-time snapshots of training runs "
                              "and compare recipes.")
    p.add_argument("runs", nargs="+", type=Path, help="run directories trained with snapshot_every_cpu_s")
    p.add_argument("--data", required=True, help="folder or JSONL manifest of evaluation clips")
    p.add_argument("--out", type=Path, required=True, help="folder for the per-snapshot scores and the plot")
    p.add_argument("--kbps", default="1,2", help="bitrates to score (default 1,2)")
    p.add_argument("--limit", type=int, default=13, help="clips to score, spread over speakers (default 13)")
    p.add_argument("--metrics", default=",".join(METRICS), help=f"metrics (default {','.join(METRICS)})")
    p.add_argument("--speed-seconds", type=float, default=30.0, help="audio timed for inference speed")
    p.add_argument("--max-cpu-s", type=float, default=None, help="ignore snapshots past this many CPU seconds")
    p.set_defaults(func=_recipes)


def _phase_recovery(args: argparse.Namespace) -> int:
    from eval.phase_recovery import compare

    return compare(args.data, args.limit, args.seconds, args.n_fft, tuple(numbers(args.hops, "--hops", int)),
                   tuple(numbers(args.lambdas, "--lambdas")), args.heap)


def _register_phase_recovery(subparsers: argparse._SubParsersAction) -> None:
    from codec.network.phase_recovery import LAMBDA

    p = subparsers.add_parser("phase-recovery", help="speech rendered from its true magnitudes with recovered phases",
                              description="PESQ and ViSQOL of speech rendered from its true magnitudes with phases "
                                          "recovered from them (decoder_phase: recovered), against the clips.")
    p.add_argument("--data", type=Path, required=True, help="a JSONL manifest of clips (a \"path\" per line)")
    p.add_argument("--limit", type=int, default=4, help="clips to use (default %(default)s)")
    p.add_argument("--seconds", type=float, default=4.0, help="seconds from each clip's start (default %(default)s)")
    p.add_argument("--n-fft", type=int, default=640, help="frame length (default %(default)s)")
    p.add_argument("--hops", default="160,320", help="hops to compare (default %(default)s)")
    p.add_argument("--lambdas", default=str(LAMBDA), help="lambda / n_fft^2 values (default %(default)s)")
    p.add_argument("--heap", action="store_true", help="also PGHI's heap integration (about 0.1 s per audio s)")
    p.set_defaults(func=_phase_recovery)


def _pitch_probe(args: argparse.Namespace) -> int:
    from eval.pitch_probe import compare

    return compare(args.model, args.train, args.dev, numbers(args.kbps, "--kbps"), args.train_files, args.steps)


def _register_pitch_probe(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("pitch-probe", help="how precisely a model's codes carry pitch, read by a small probe",
                              description="How precisely a model's codes carry pitch: an MLP over four causal frames "
                              "of the decoded codes learns Praat's pitch on training files; its error on held-out "
                              "files, in cents.")
    p.add_argument("--model", action="append", required=True,
                   help="a saved model directory, a bundled name or preset:16khz (untrained); repeat to compare")
    p.add_argument("--train", required=True, help="folder or JSONL manifest of speech to train the probe on")
    p.add_argument("--dev", required=True, help="folder or JSONL manifest of held-out speech to score it on")
    p.add_argument("--kbps", default="2", help="bitrates of the codes; 0 for the unquantized latent (default 2)")
    p.add_argument("--train-files", type=int, default=400,
                   help="training files, drawn at random (default 400); 0 scores only a harmonic decoder's own pitch")
    p.add_argument("--steps", type=int, default=1500, help="probe training steps of 256 frames (default 1500)")
    p.set_defaults(func=_pitch_probe)


def _decompose(args: argparse.Namespace) -> int:
    from eval.decompose import compare

    return compare(args.model, args.data, numbers(args.kbps, "--kbps"), args.limit, args.seconds, args.n_fft)


def _register_decompose(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("decompose", help="what holds decoded speech down: its magnitudes, phases or pitch",
                              description="PESQ and ViSQOL of a model's decoded clips, of their magnitudes with the "
                              "clips' own phases, of the clips' magnitudes with their phases, and of the decoder "
                              "driven by Praat's pitch (decoders with harmonics).")
    p.add_argument("--model", action="append", required=True,
                   help="a saved model directory or a bundled name; repeat to compare")
    p.add_argument("--data", required=True, help="folder or JSONL manifest of speech clips")
    p.add_argument("--kbps", default="2,0", help="bitrates; 0 for the unquantized latent (default %(default)s)")
    p.add_argument("--limit", type=int, default=13, help="clips to use, from the top (default %(default)s)")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds from each clip's start (default %(default)s)")
    p.add_argument("--n-fft", type=int, default=512, help="STFT that swaps magnitudes and phases (default %(default)s)")
    p.set_defaults(func=_decompose)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``eval``, ``codebooks``, ``phonetic``, ``voices``, ``bench``, ``bench-bitstream``, ``demo``, ``recipes``,
    ``phase-recovery``, ``pitch-probe`` and ``decompose``."""
    for add in (_register_eval, _register_codebooks, _register_phonetic, _register_voices, _register_bench,
                _register_bench_bitstream, _register_demo, _register_recipes, _register_phase_recovery,
                _register_pitch_probe, _register_decompose):
        add(subparsers)
