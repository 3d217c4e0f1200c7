"""``codec export`` and ``codec precision``: deployment files and half precision (:mod:`codec.export`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from codec import audio
from codec.export import FORMATS, SUFFIXES, check_parity, check_precision, export, load_long_speech
from codec.frame_step import check_step_parity, export_step
from codec.resolve import MODEL_HELP, load_codec


def _export(args: argparse.Namespace) -> int:
    model = load_codec(args.model)
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    fixed = round(args.fixed_seconds * model.sample_rate) if args.fixed_seconds else None
    written = export(model, args.out_dir, formats, args.kbps, fixed)
    wav = audio.load(args.audio, target_rate=model.sample_rate, mono=True)[0][None]  # [1, 1, T]
    if fixed:
        wav = audio.fit_length(wav, fixed)
    n_q = model.n_q_for_bandwidth(args.kbps)
    print(f"exported {model.config.name} ({model.model_id}) at {n_q} codebooks to {args.out_dir}")
    print(f"parity with PyTorch on {args.audio} ({wav.shape[-1] / model.sample_rate:.2f} s):")
    for files in written:
        print(f"  {files.encoder.name}, {files.decoder.name}")
        print("  " + check_parity(model, files, wav, args.kbps).format_line())
        if args.step:
            step = export_step(model, files.encoder.with_name(f"step{SUFFIXES[files.format]}"), args.kbps)
            print(f"  {step.name}: one streamed frame, encode + decode, state in and out")
            print("  " + check_step_parity(model, step, wav, args.kbps).format_line())
    return 0


def _precision(args: argparse.Namespace) -> int:
    model = load_codec(args.model)
    wav = load_long_speech(args.audio, model.sample_rate, args.seconds)
    seconds = wav.shape[-1] / model.sample_rate
    float_seconds, reports = check_precision(model, wav)
    print(f"{model.config.name} ({model.model_id}) on {seconds:.1f} s of audio; float32 took {float_seconds:.1f} s")
    for report in reports:
        print("  " + report.format_line())
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``export`` and ``precision`` to the ``codec`` command."""
    p = subparsers.add_parser(
        "export",
        help="export the encoder and decoder to ONNX and TorchScript and check them against PyTorch",
        description="Write encoder and decoder files (audio [B, 1, T] -> codes [B, n_q, F] -> audio [B, 1, F*hop]) "
        "and print their parity with eager PyTorch on a real recording.",
    )
    p.add_argument("out_dir", type=Path, help="folder for the exported files")
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--audio", type=Path, required=True, help="a speech recording for the parity check")
    p.add_argument("--format", default=",".join(FORMATS), help="comma-separated: onnx, torchscript (default both)")
    p.add_argument("--kbps", type=float, default=None, help="bitrate, fixing the codebooks (default: all)")
    p.add_argument("--fixed-seconds", type=float, default=None, help="fixed input length (default: dynamic)")
    p.add_argument("--step", action="store_true",
                   help="also export the one-frame streaming step (frame and past in; codes, audio and past out)")
    p.set_defaults(func=_export)

    p = subparsers.add_parser(
        "precision",
        help="compare float16 and bfloat16 inference with float32 on a long recording",
        description="Run the model in float16 and bfloat16 on --seconds of audio (the files joined, repeated, cut) "
        "and report code agreement and waveform SNR against float32.",
    )
    p.add_argument("audio", type=Path, nargs="+", help="speech recordings, joined one after another")
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--seconds", type=float, default=35.0, help="length of the test signal (default 35)")
    p.set_defaults(func=_precision)
