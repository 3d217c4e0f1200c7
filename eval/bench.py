"""Speed, streaming latency and memory of the codec, beside libopus and the EnCodec-sized preset.

    python -m eval.bench [--model preset:16khz] [--seconds 60] [--threads 1,2] [--data tests/data]
                         [--memory 10,600,3600]

Flags:
    --model     the model to measure (a saved directory, a bundled name or
                ``preset:NAME``; default ``preset:16khz``). The EnCodec-24k-sized
                preset (``preset:24khz``) and libopus are always measured beside it.
    --seconds   seconds of real speech to time (default 60): the clips of
                ``--data`` concatenated, repeated if too short.
    --threads   torch thread counts to try (default 1,2).
    --data      folder or JSONL manifest of speech clips (default tests/data).
    --memory    input durations in seconds for the memory test (default
                10,600,3600; '' to skip). The 1 h case takes a few minutes.

What is printed:

1. **Speed**: seconds of audio per second of wall-clock compute (``x`` real
   time) for encode and decode separately. The audio is cut into 10 s
   segments, each encoded and decoded offline in one call after a warm-up
   call; the median over segments is reported. libopus (16 kHz, VoIP, 6 kbps)
   runs in ffmpeg on the same audio, timed by ffmpeg's ``-benchmark`` real time
   (process start-up excluded), median of :data:`OPUS_RUNS` runs. Ratios divide
   by libopus and by the 24 kHz preset at the same thread count.
2. **Streaming**: algorithmic latency (one frame, ``hop / rate``) and the
   compute time of each one-frame chunk (encode + decode) inside
   ``model.streaming()``, p50 and p95, on one thread.
3. **Memory**: peak resident set size of a fresh process that loads the
   model and encodes + decodes a speech input of each duration chunk by
   chunk through the streaming API (:data:`MEMORY_CHUNK_S` chunks, generated
   on the fly by cycling through the clips, never held whole), on one thread.
   ``RSS after loading`` is the peak before the first chunk (importing torch
   alone peaks at several hundred MB). The peak is the process's own high-water
   mark, ``VmHWM`` in ``/proc/self/status``: Linux's ``ru_maxrss`` also keeps
   the parent's high-water mark through fork and exec (a child of a 1 GB
   process reports at least 1 GB), so it is used only where ``/proc`` is missing.

Other processes on the machine slow every number; the load average is printed first.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from codec import audio
from codec.errors import CodecError, InputError
from codec.model import Codec
from codec.resolve import load_codec as load_model
from codec.sources import list_audio
from eval.baselines import BaselineSetting, check_available, parse_baselines

REFERENCE_SPEC = "preset:24khz"  # EnCodec-24k-sized architecture (codec.presets.codec_24khz)
OPUS = "opus:6"  # libopus, 16 kHz VoIP, 6 kbps (eval.baselines)
SEGMENT_S = 10.0  # length of each timed segment
OPUS_RUNS = 5
STREAM_SECONDS = 5.0  # audio fed frame by frame for the latency percentiles
MEMORY_CHUNK_S = 1.0
DEFAULT_DATA = Path(__file__).resolve().parent.parent / "tests" / "data"


@dataclass
class Speed:
    """Encode and decode speed in seconds of audio per second of compute."""

    encode_x: float
    decode_x: float


# ----- audio ------------------------------------------------------------------------------------
def speech_clips(data: str | Path, rate: int) -> list[torch.Tensor]:
    """Every clip of ``data`` as a mono signal ``[T]`` at ``rate``."""
    return [audio.load(p, target_rate=rate, mono=True)[0][0] for p in list_audio(data)]


def speech_chunks(clips: list[torch.Tensor], seconds: float, rate: int, chunk: int) -> Iterator[torch.Tensor]:
    """``chunk``-sample pieces ``[chunk]`` of the clips played in a loop, ``seconds`` long in total.

    Only one clip and one chunk are held at a time beyond ``clips`` itself.
    """
    remaining = int(seconds * rate)
    buffer = torch.zeros(0)
    index = 0
    while remaining > 0:
        while buffer.numel() < min(chunk, remaining):
            buffer = torch.cat([buffer, clips[index % len(clips)]])
            index += 1
        size = min(chunk, remaining)
        piece, buffer = buffer[:size], buffer[size:]
        remaining -= size
        yield piece


def speech(clips: list[torch.Tensor], seconds: float, rate: int) -> torch.Tensor:
    """``seconds`` of the clips concatenated (repeated if needed): ``[T]``."""
    return torch.cat(list(speech_chunks(clips, seconds, rate, int(SEGMENT_S * rate))))


# ----- speed ------------------------------------------------------------------------------------
def time_codec(model: Codec, wav: torch.Tensor, threads: int, segment_s: float = SEGMENT_S) -> Speed:
    """Median encode and decode speed of ``model`` over ``segment_s`` segments of ``wav`` [T] (at its rate)."""
    torch.set_num_threads(threads)
    size = int(segment_s * model.sample_rate)
    segments = [wav[i:i + size][None, None] for i in range(0, wav.numel() - size + 1, size)]  # [1, 1, size] each
    model.decode(model.encode(segments[0]))  # warm-up, not timed
    encode_x, decode_x = [], []
    for segment in segments:
        start = time.perf_counter()
        encoded = model.encode(segment)
        middle = time.perf_counter()
        model.decode(encoded)
        end = time.perf_counter()
        encode_x.append(segment_s / (middle - start))
        decode_x.append(segment_s / (end - middle))
    return Speed(statistics.median(encode_x), statistics.median(decode_x))


def _ffmpeg_seconds(args: list[str]) -> float:
    """Runs ffmpeg with ``-benchmark``; returns its ``rtime`` (transcoding wall time, start-up excluded)."""
    proc = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-benchmark", "-y", *args],
                          capture_output=True, text=True, check=False)
    match = re.search(r"rtime=([0-9.]+)s", proc.stderr)
    if proc.returncode != 0 or not match:
        raise CodecError(f"ffmpeg failed while timing libopus: {proc.stderr.strip()[-300:]}")
    return float(match.group(1))


def time_opus(wav: torch.Tensor, rate: int, setting: BaselineSetting, threads: int, runs: int = OPUS_RUNS) -> Speed:
    """Median libopus encode and decode speed on ``wav`` [T] at ``rate`` (resampled to the setting's rate)."""
    check_available(setting)
    seconds = wav.numel() / rate
    with tempfile.TemporaryDirectory(prefix="codec-bench-") as tmp:
        src, enc = Path(tmp) / "in.wav", Path(tmp) / f"out{setting.extension}"
        audio.save(src, audio.resample(wav, rate, setting.sample_rate)[None], setting.sample_rate)
        thread_args = ["-threads", str(threads)]
        encode = [_ffmpeg_seconds([*thread_args, "-i", str(src), *setting.encode_args, str(enc)])
                  for _ in range(runs)]
        decode = [_ffmpeg_seconds([*thread_args, "-i", str(enc), "-f", "null", "-"]) for _ in range(runs)]
    return Speed(seconds / statistics.median(encode), seconds / statistics.median(decode))


# ----- streaming --------------------------------------------------------------------------------
def streaming_latency(model: Codec, wav: torch.Tensor) -> dict[str, float]:
    """Algorithmic latency and per-frame compute times (ms) of ``model`` streaming ``wav`` [T] on one thread.

    Every whole frame of ``wav`` (at the model's rate) is one chunk; the first ten are also run untimed first.
    """
    torch.set_num_threads(1)
    hop = model.hop_length
    frames = wav[: wav.numel() // hop * hop].reshape(-1, 1, 1, hop)  # [N, 1, 1, hop]
    times_ms = []
    with model.streaming(batch_size=1):
        for frame in frames[:10]:  # warm-up, not timed
            model.decode(model.encode(frame))
    with model.streaming(batch_size=1):
        for frame in frames:
            start = time.perf_counter()
            model.decode(model.encode(frame))
            times_ms.append(1000 * (time.perf_counter() - start))
    cuts = statistics.quantiles(times_ms, n=100)
    return {"latency_ms": 1000 * hop / model.sample_rate, "p50_ms": statistics.median(times_ms),
            "p95_ms": cuts[94], "chunks": len(times_ms)}


# ----- memory -----------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (``VmHWM``; ``ru_maxrss`` without ``/proc``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def memory_worker(model_spec: str, seconds: float, data: str, threads: int) -> dict[str, float]:
    """Encodes + decodes ``seconds`` of speech chunk by chunk in this process; returns RSS in MB.

    Meant to run in a fresh process (the peak only grows).
    """
    torch.set_num_threads(threads)
    model = load_model(model_spec)
    clips = speech_clips(data, model.sample_rate)
    setup_mb = peak_rss_mb()
    chunk = max(1, round(MEMORY_CHUNK_S * model.frame_rate_hz)) * model.hop_length
    start = time.perf_counter()
    samples = 0
    with model.streaming(batch_size=1):
        for piece in speech_chunks(clips, seconds, model.sample_rate, chunk):
            padded = torch.nn.functional.pad(piece, (0, -piece.numel() % model.hop_length))
            model.decode(model.encode(padded[None, None]))
            samples += piece.numel()
    return {"seconds": samples / model.sample_rate, "setup_rss_mb": setup_mb,
            "peak_rss_mb": peak_rss_mb(),
            "wall_s": time.perf_counter() - start}


def measure_memory(model_spec: str, seconds: float, data: str) -> dict[str, float]:
    """Runs :func:`memory_worker` on one thread in a fresh Python process and returns its result."""
    cmd = [sys.executable, "-m", "eval.bench", "--model", model_spec, "--data", data, "--threads", "1",
           "--memory-worker", str(seconds)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise CodecError(f"the memory test for {seconds:g} s failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----- report -----------------------------------------------------------------------------------
def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _float_list(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def speed_table(speeds: dict[tuple[str, int], Speed], reference: str) -> str:
    """Markdown table of speeds with ratios to libopus and to the ``reference`` model."""
    lines = [("| codec | threads | encode x | decode x | encode / libopus | decode / libopus | "
             f"encode / {reference} | decode / {reference} |"), "|---|---|---|---|---|---|---|---|"]
    for (name, threads), s in speeds.items():
        opus, ref = speeds[("libopus", threads)], speeds[(reference, threads)]
        lines.append(f"| {name} | {threads} | {s.encode_x:.1f} | {s.decode_x:.1f} | {s.encode_x / opus.encode_x:.3f} | "
                     f"{s.decode_x / opus.decode_x:.3f} | {s.encode_x / ref.encode_x:.2f} | "
                     f"{s.decode_x / ref.decode_x:.2f} |")
    return "\n".join(lines)


def run_speed(models: dict[str, Codec], clips_data: str, seconds: float, threads: list[int]) -> dict:
    """Times every model and libopus at every thread count on the same speech."""
    speeds: dict[tuple[str, int], Speed] = {}
    base_rate = 16000
    wav = speech(speech_clips(clips_data, base_rate), seconds, base_rate)  # [T] at 16 kHz
    opus = parse_baselines(OPUS)[0]
    for n in threads:
        for name, model in models.items():
            speeds[(name, n)] = time_codec(model, audio.resample(wav, base_rate, model.sample_rate), n)
            print(f"  timed {name} on {n} thread(s)", file=sys.stderr)
        speeds[("libopus", n)] = time_opus(wav, base_rate, opus, n)
    return speeds


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmarks and prints their tables."""
    parser = argparse.ArgumentParser(prog="python -m eval.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="preset:16khz",
                        help="saved directory, bundled name or preset:NAME (default: %(default)s); "
                        f"{REFERENCE_SPEC} and libopus are measured beside it")
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="seconds of speech to time, cut into 10 s segments (default: %(default)s)")
    parser.add_argument("--threads", default="1,2", help="torch thread counts to try (default: %(default)s)")
    parser.add_argument("--data", default=str(DEFAULT_DATA),
                        help="folder or JSONL manifest of speech clips (default: tests/data)")
    parser.add_argument("--memory", default="10,600,3600",
                        help="input seconds for the peak-memory runs, '' to skip (default: %(default)s)")
    parser.add_argument("--memory-worker", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        threads = _int_list(args.threads)
        if args.memory_worker is not None:
            print(json.dumps(memory_worker(args.model, args.memory_worker, args.data, threads[0])))
            return 0
        return _run_all(args, threads)
    except CodecError as e:
        print(f"eval.bench: error: {e}", file=sys.stderr)
        return 2


def _run_all(args: argparse.Namespace, threads: list[int]) -> int:
    if args.seconds < SEGMENT_S or not threads:
        raise InputError(f"--seconds must be at least {SEGMENT_S:g} and --threads non-empty")
    models = {args.model: load_model(args.model)}
    models.setdefault(REFERENCE_SPEC, load_model(REFERENCE_SPEC))
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; {args.seconds:g} s of speech "
          f"from {args.data}")
    for name, model in models.items():
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"{name}: {model.config.name}, {params:.2f} M parameters, {model.sample_rate} Hz, hop {model.hop_length}")
    print("\n## Speed (seconds of audio per second of compute; median over 10 s segments)\n")
    print(speed_table(run_speed(models, args.data, args.seconds, threads), REFERENCE_SPEC))
    print("\n## Streaming (one-frame chunks, encode + decode, 1 thread)\n")
    print("| model | algorithmic latency ms | chunks | p50 ms | p95 ms |\n|---|---|---|---|---|")
    wav16 = speech(speech_clips(args.data, 16000), STREAM_SECONDS, 16000)  # [T]
    for name, model in models.items():
        s = streaming_latency(model, audio.resample(wav16, 16000, model.sample_rate))
        print(f"| {name} | {s['latency_ms']:.1f} | {s['chunks']} | {s['p50_ms']:.2f} | {s['p95_ms']:.2f} |")
    durations = _float_list(args.memory)
    if durations:
        print(f"\n## Peak memory of {args.model} (fresh process, {MEMORY_CHUNK_S:g} s streaming chunks, "
              "1 thread)\n")
        print("| input | RSS after loading MB | peak RSS MB | wall s |\n|---|---|---|---|")
        for seconds in durations:
            m = measure_memory(args.model, seconds, args.data)
            print(f"| {_duration(seconds)} | {m['setup_rss_mb']:.0f} | {m['peak_rss_mb']:.0f} | {m['wall_s']:.0f} |",
                  flush=True)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    return 0


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    if seconds >= 60:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


if __name__ == "__main__":
    sys.exit(main())
