"""Speed, streaming latency, start-up and memory of the codec, beside libopus and the EnCodec-sized preset.

    codec bench [--model preset:16khz] [--seconds 60] [--threads 1,2] [--data tests/data]
                [--cli-seconds 600] [--memory 10,600,3600]      (or python -m eval.bench)

Flags:
    --model     the model to measure (a saved directory, a bundled name or
                ``preset:NAME``; default ``preset:16khz``). The EnCodec-24k-sized
                preset (``preset:24khz``) and libopus are always measured beside it,
                and so is the same model with the iSTFT decoder (``--istft``).
    --istft     also measure ``--model`` with its decoder replaced by the iSTFT
                decoder of the speech recipe (``configs/speech16k.yaml``:
                width 256, 6 ConvNeXt blocks, n_fft 640), its encoder and codebooks
                kept and the decoder untrained (default on; ``--no-istft`` to skip;
                skipped when ``--model`` already has that decoder).
    --seconds   seconds of real speech to time (default 60): the clips of
                ``--data`` concatenated, repeated if too short.
    --threads   torch thread counts to try (default 1,2).
    --data      folder or JSONL manifest of speech clips (default tests/data).
    --cli-seconds  length of the file for the command-line timing (default 600; 0 to skip).
    --memory    input durations in seconds for the memory test (default
                10,600,3600; '' to skip). The 1 h case takes a few minutes.

What is printed (every model in every section but memory):

1. **Speed**: seconds of audio per second of wall-clock compute (``x`` real
   time) for encode and decode separately. The audio is cut into 10 s
   segments, each encoded and decoded offline in one call after a warm-up
   call; the median over segments is reported. libopus (16 kHz, VoIP, 6 kbps)
   runs in ffmpeg on the same audio, timed by ffmpeg's ``-benchmark`` real time
   (process start-up excluded), median of :data:`OPUS_RUNS` runs. Ratios divide
   by libopus and by the 24 kHz preset at the same thread count.
2. **Streaming**: algorithmic latency (one frame, ``hop / rate``) and the
   compute time of each one-frame chunk (encode + decode) inside
   ``model.streaming()``, p50 and p95, on one thread: wall time, and the
   thread's CPU time (``time.thread_time``), which other processes on the
   machine disturb far less. Each model other than the 24 kHz reference is
   also timed as its exported one-frame step (:mod:`codec.frame_step`) in
   onnxruntime: the same codes and audio without PyTorch's per-op overhead.
3. **Command line**: wall time of ``codec compress`` then ``codec decompress``
   of a ``--cli-seconds`` speech WAV in fresh processes on one thread,
   start-up included, against offline ``encode`` + ``decode`` of the same
   speech in 10 s pieces timed just before (``CLI_ROUNDS`` alternating rounds,
   the median reported with every round's ratio), against ffmpeg's libopus
   round trip of the same file (start-up included) and against the 24 kHz preset.
   A bundled model's file is decompressed as a user does, by the model it
   names: on its cached onnxruntime decoder (:mod:`codec.fileformat.onnx_decode`),
   written by an untimed round trip of 3 s before (the commands' cache is a
   fresh folder); PyTorch's decompress of the same file is printed below the table.
4. **Start-up**: wall time and peak RSS of a bare interpreter, ``import
   torch``, ``codec --help``, ``codec info`` and ``codec truncate`` on a
   compressed file, ``codec decompress`` of it on the cached decoder, and of
   ``ffmpeg -version``.
5. **Memory**: a fresh process imports torch, loads the model, compresses a
   speech WAV of each duration with ``codec.fileformat.compress.compress`` (the code
   of ``codec compress``) and decompresses it, on one thread; its RSS after
   the import, after loading and its peak after each step, beside the peak of
   ``import torch`` alone and of ffmpeg's libopus encode of the same file.
   Peaks are the process's own high-water mark, ``VmHWM`` in
   ``/proc/self/status``: Linux's ``ru_maxrss`` also keeps the parent's
   high-water mark through fork and exec (a child of a 1 GB process reports
   at least 1 GB), so ffmpeg, which has no ``/proc`` hook, is started from a
   small Python wrapper and measured by its ``RUSAGE_CHILDREN``.

Other processes on the machine slow every number; the load average is printed first.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from codec import audio
from codec.errors import CodecError, InputError
from codec.fileformat.onnx_decode import CACHE_ENV
from codec.frame_step import StepRunner, export_step
from codec.network.model import Codec, pretrained_names
from codec.resolve import load_codec as load_model
from codec.sources import list_audio
from eval.baselines import BaselineSetting, check_available, parse_baselines

REFERENCE_SPEC = "preset:24khz"  # EnCodec-24k-sized architecture (codec.network.presets.codec_24khz)
#: The speech recipe whose inverse-STFT decoder :func:`with_istft_decoder` builds.
SPEECH_RECIPE = Path(__file__).resolve().parents[1] / "configs" / "speech16k.yaml"
#: The model settings that shape that decoder.
ISTFT_KEYS = ("decoder", "decoder_dim", "decoder_layers", "n_fft", "decoder_harmonics")
ISTFT_SUFFIX = " + istft decoder"
STEP_SUFFIX = ", exported step (onnxruntime)"
ISTFT_SEED = 0
OPUS = "opus:6"  # libopus, 16 kHz VoIP, 6 kbps (eval.baselines)
SEGMENT_S = 10.0  # length of each timed segment
OPUS_RUNS = 5
CLI_ROUNDS = 3  # alternating offline and command-line rounds: the host's speed drifts by 20-40% over minutes
STREAM_SECONDS = 30.0  # audio fed frame by frame: 1,500 frames at 50 Hz, so that p95 rests on the slowest 75, not 12
MEMORY_CHUNK_S = 1.0
REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO / "tests" / "data"
#: Prepended to every measured Python child: prints its own peak RSS (``VmHWM``) to stderr at exit.
_HWM_PRELUDE = """import atexit, sys
def _vm_hwm_kb():
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) for line in f if line.startswith('VmHWM:'))
atexit.register(lambda: print('VmHWM_kB', _vm_hwm_kb(), file=sys.stderr))
"""
_CLI_CODE = "from codec.cli import main\nsys.exit(main(sys.argv[1:]))"
_WRAPPER_CODE = """import resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
print('wall_s', time.perf_counter() - start, file=sys.stderr)
print('children_kB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)
sys.exit(code)
"""
_MEMORY_CODE = """import json, time
import torch
torch.set_num_threads(1)
report = {'import_mb': _vm_hwm_kb() / 1024}
from codec.allocator import keep_freed_memory
from codec.fileformat.compress import compress, decompress, load_for_coding
loaded = load_for_coding(sys.argv[1])  # as the command line loads it
keep_freed_memory()  # as codec compress does after loading
report['loaded_mb'] = _vm_hwm_kb() / 1024
start = time.perf_counter()
compress(sys.argv[2], sys.argv[3], loaded)
report['compress_s'], report['compress_peak_mb'] = time.perf_counter() - start, _vm_hwm_kb() / 1024
start = time.perf_counter()
decompress(sys.argv[3], sys.argv[4], loaded)
report['decompress_s'], report['decompress_peak_mb'] = time.perf_counter() - start, _vm_hwm_kb() / 1024
print(json.dumps(report))
"""


@dataclass
class Speed:
    """Encode and decode speed in seconds of audio per second of compute."""

    encode_x: float
    decode_x: float


# ----- models ----------------------------------------------------------------------------------
def with_istft_decoder(model: Codec, decoder: dict[str, object] | None = None) -> Codec:
    """``model`` with its decoder replaced by an untrained (seeded) iSTFT decoder, its encoder and codebooks kept.

    What one-frame streaming and the command line cost with the iSTFT decoder
    depends on its shape alone, so the bench measures it without a trained one.

    Args:
        model: The model whose encoder and codebooks are kept.
        decoder: The decoder's model settings (:data:`ISTFT_KEYS`); default:
            those of :data:`SPEECH_RECIPE`.
    """
    if decoder is None:
        recipe = yaml.safe_load(SPEECH_RECIPE.read_text())["model"]
        decoder = {key: recipe[key] for key in ISTFT_KEYS}
    config = dataclasses.replace(model.config, name=f"{model.config.name}-istft", **decoder)
    torch.manual_seed(ISTFT_SEED)
    built = Codec(config).eval()
    built.encoder.load_state_dict(model.encoder.state_dict())
    built.quantizer.load_state_dict(model.quantizer.state_dict())
    return built


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
    frames = _frames(wav, model.hop_length)
    with model.streaming(batch_size=1):
        for frame in frames[:10]:  # warm-up, not timed
            model.decode(model.encode(frame))
    with model.streaming(batch_size=1):
        times = _frame_times(lambda frame: model.decode(model.encode(frame)), frames)
    return {"latency_ms": 1000 * model.hop_length / model.sample_rate, **times}


def step_latency(model: Codec, wav: torch.Tensor, directory: Path) -> dict[str, float]:
    """:func:`streaming_latency` of ``model``'s exported one-frame step (:mod:`codec.frame_step`) in onnxruntime."""
    runner = StepRunner(export_step(model, directory / f"step-{model.model_id}.onnx"), threads=1)
    frames = _frames(wav, model.hop_length)
    for frame in frames[:10]:
        runner(frame)
    runner.reset()
    return {"latency_ms": 1000 * model.hop_length / model.sample_rate, **_frame_times(runner, frames)}


def _frames(wav: torch.Tensor, hop: int) -> torch.Tensor:
    """The whole frames of ``wav`` [T] as one-frame chunks ``[N, 1, 1, hop]``."""
    return wav[: wav.numel() // hop * hop].reshape(-1, 1, 1, hop)


def _frame_times(run: Callable[[torch.Tensor], object], frames: torch.Tensor) -> dict[str, float]:
    """Wall and thread-CPU p50 and p95 (ms) of ``run`` on each of ``frames``."""
    times_ms, cpu_ms = [], []
    for frame in frames:
        start, cpu_start = time.perf_counter(), time.thread_time()
        run(frame)
        times_ms.append(1000 * (time.perf_counter() - start))
        cpu_ms.append(1000 * (time.thread_time() - cpu_start))
    cuts, cpu_cuts = statistics.quantiles(times_ms, n=100), statistics.quantiles(cpu_ms, n=100)
    return {"p50_ms": statistics.median(times_ms), "p95_ms": cuts[94], "cpu_p50_ms": statistics.median(cpu_ms),
            "cpu_p95_ms": cpu_cuts[94], "chunks": len(times_ms)}


# ----- memory -----------------------------------------------------------------------------------
# ----- processes: command line, start-up, memory ------------------------------------------------
@dataclass
class Run:
    """A measured child process: wall time (start-up included), peak RSS, standard output."""

    wall_s: float
    peak_mb: float
    stdout: str


def _child_env() -> dict[str, str]:
    """One thread, and this checkout first on the path."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=path)


def _stderr_value(stderr: str, key: str) -> float:
    match = re.search(rf"^{key} ([0-9.]+)$", stderr, re.MULTILINE)
    if not match:
        raise CodecError(f"a measured process did not report {key}: {stderr.strip()[-500:]}")
    return float(match.group(1))


def run_python(code: str, *args: str | Path) -> Run:
    """Runs ``python -c code args`` in a fresh process on one thread; its own peak RSS comes from ``VmHWM``."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _HWM_PRELUDE + code, *map(str, args)], capture_output=True,
                          text=True, env=_child_env(), check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise CodecError(f"{code.splitlines()[0]!r} {' '.join(map(str, args))} failed: {proc.stderr.strip()[-500:]}")
    return Run(wall, _stderr_value(proc.stderr, "VmHWM_kB") / 1024, proc.stdout)


def run_codec(*args: str | Path) -> Run:
    """``codec ARGS`` in a fresh process (what a user types), measured by :func:`run_python`."""
    return run_python(_CLI_CODE, *args)


def run_program(*command: str | Path) -> Run:
    """Any program, started from a small Python wrapper whose ``RUSAGE_CHILDREN`` gives its peak RSS."""
    proc = subprocess.run([sys.executable, "-c", _WRAPPER_CODE, *map(str, command)], capture_output=True, text=True,
                          env=_child_env(), check=False)
    if proc.returncode != 0:
        raise CodecError(f"{' '.join(map(str, command))} failed")
    return Run(_stderr_value(proc.stderr, "wall_s"), _stderr_value(proc.stderr, "children_kB") / 1024, "")


def write_speech(path: Path, clips: list[torch.Tensor], seconds: float, rate: int) -> Path:
    """Writes ``seconds`` of the clips (looped) to a 16-bit WAV at ``rate``, one block at a time."""
    import soundfile as sf

    with sf.SoundFile(str(path), "w", rate, 1, "PCM_16", format="WAV") as f:
        for piece in speech_chunks(clips, seconds, rate, int(SEGMENT_S * rate)):
            f.write(piece.clamp(-1, 1).numpy())
    return path


def cli_model_arg(spec: str, model: Codec, directory: Path) -> str:
    """What ``codec --model`` takes for ``spec``: the spec itself, or a saved copy of a preset or a built model."""
    if not spec.startswith("preset:") and not spec.endswith(ISTFT_SUFFIX):
        return spec
    target = directory / re.sub(r"[^A-Za-z0-9_.-]+", "-", spec)
    if not target.exists():
        model.save_pretrained(target)
    return str(target)


def time_cli(model_arg: str, wav_path: Path, work: Path) -> tuple[Run, Run]:
    """``codec compress`` then ``codec decompress`` of ``wav_path``, each a fresh process, as a user types them:
    a bundled model's file is decompressed by the model it names (on the cached decoder, once cached), any other
    with ``--model``."""
    packed, restored = work / "cli.rvq", work / "cli.wav"
    named = () if model_arg in pretrained_names() else ("--model", model_arg)
    return (run_codec("compress", wav_path, packed, "--model", model_arg, "--quiet"),
            run_codec("decompress", packed, restored, *named, "--quiet"))


def time_opus_cli(wav_path: Path, setting: BaselineSetting, work: Path) -> tuple[Run, Run]:
    """ffmpeg's libopus encode then decode of ``wav_path``, each a fresh process (start-up included)."""
    encoded, decoded = work / f"opus{setting.extension}", work / "opus.wav"
    common = ["ffmpeg", "-nostdin", "-hide_banner", "-threads", "1", "-y"]
    return (run_program(*common, "-i", wav_path, *setting.encode_args, encoded),
            run_program(*common, "-i", encoded, decoded))


def measure_memory(model_arg: str, wav_path: Path, work: Path) -> dict[str, float]:
    """Compresses and decompresses ``wav_path`` in a fresh process; RSS (MB) after each step and times (s)."""
    run = run_python(_MEMORY_CODE, model_arg, wav_path, work / "memory.rvq", work / "memory.wav")
    return json.loads(run.stdout.strip().splitlines()[-1])


def _round_trip_x(seconds: float, runs: tuple[Run, Run]) -> float:
    return seconds / (runs[0].wall_s + runs[1].wall_s)


def _offline_round_trip_x(speed: Speed) -> float:
    """Encode + decode speed of one piece: the harmonic combination of the two."""
    return 1 / (1 / speed.encode_x + 1 / speed.decode_x)


# ----- report -----------------------------------------------------------------------------------
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


def run_all(
    model_spec: str, data: str, seconds: float, threads: list[int], cli_seconds: float, memory_seconds: list[float],
    istft: bool = True,
) -> int:
    """Runs every section and prints its table (the flags of ``codec bench`` are in the module docstring).

    With ``istft``, ``model_spec`` is also measured with the speech recipes' iSTFT decoder (:func:`with_istft_decoder`).
    """
    if seconds < SEGMENT_S or not threads:
        raise InputError(f"--seconds must be at least {SEGMENT_S:g} and --threads non-empty")
    models = {model_spec: load_model(model_spec)}
    if istft and models[model_spec].config.decoder != "istft":
        models[model_spec + ISTFT_SUFFIX] = with_istft_decoder(models[model_spec])
    models.setdefault(REFERENCE_SPEC, load_model(REFERENCE_SPEC))
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; {seconds:g} s of speech "
          f"from {data}")
    for name, model in models.items():
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"{name}: {model.config.name}, {params:.2f} M parameters, {model.sample_rate} Hz, hop {model.hop_length}")
    print("\n## 1. Offline speed (seconds of audio per second of compute; median over 10 s segments)\n")
    speeds = run_speed(models, data, seconds, threads)
    print(speed_table(speeds, REFERENCE_SPEC))
    streams = _streaming_section(models, data, speeds.get(("libopus", 1)))
    clips16 = speech_clips(data, 16000)
    user_cache = os.environ.get(CACHE_ENV)
    with tempfile.TemporaryDirectory(prefix="codec-bench-") as tmp:
        work = Path(tmp)
        os.environ[CACHE_ENV] = str(work / "decoder-cache")  # the commands' decoder cache starts empty
        try:
            model_args = {name: cli_model_arg(name, model, work) for name, model in models.items()}
            if cli_seconds > 0:
                _cli_section(models, model_args, clips16, cli_seconds, work)
            _startup_section(model_args[model_spec], clips16, work)
            if memory_seconds:
                _memory_section(model_spec, model_args, clips16, memory_seconds, work)
        finally:
            if user_cache is None:
                os.environ.pop(CACHE_ENV, None)
            else:
                os.environ[CACHE_ENV] = user_cache
    for name in models:
        if name != REFERENCE_SPEC:
            eager, step = streams[name], streams[name + STEP_SUFFIX]
            print(f"\n(streaming p95 of {name}: {eager['p95_ms']:.2f} ms per {eager['latency_ms']:.0f} ms frame "
                  f"in PyTorch, {step['p95_ms']:.2f} ms as the exported step)")
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    return 0


def _streaming_section(models: dict[str, Codec], data: str, opus: Speed | None) -> dict[str, dict[str, float]]:
    print("\n## 2. Streaming (one-frame chunks, encode + decode, 1 thread)\n")
    print("| model | algorithmic latency ms | chunks | p50 ms | p95 ms | thread CPU p50 ms | thread CPU p95 ms | "
          "p50 / 24 kHz preset | p50 / libopus |\n|---|---|---|---|---|---|---|---|---|")
    wav16 = speech(speech_clips(data, 16000), STREAM_SECONDS, 16000)  # [T]
    streams = {name: streaming_latency(model, audio.resample(wav16, 16000, model.sample_rate))
               for name, model in models.items()}
    with tempfile.TemporaryDirectory(prefix="codec-bench-step-") as tmp:
        for name, model in models.items():
            if name != REFERENCE_SPEC:
                streams[name + STEP_SUFFIX] = step_latency(model, audio.resample(wav16, 16000, model.sample_rate),
                                                           Path(tmp))
    ref = streams[REFERENCE_SPEC]["p50_ms"]
    # libopus: the mean compute of one 20 ms frame, from its offline speed on one thread.
    opus_ms = 20 * (1 / opus.encode_x + 1 / opus.decode_x) if opus else float("nan")
    for name, s in streams.items():
        print(f"| {name} | {s['latency_ms']:.1f} | {s['chunks']} | {s['p50_ms']:.2f} | {s['p95_ms']:.2f} | "
              f"{s['cpu_p50_ms']:.2f} | {s['cpu_p95_ms']:.2f} | {s['p50_ms'] / ref:.2f} | {s['p50_ms'] / opus_ms:.1f} |")
    print(f"\nlibopus: {opus_ms:.3f} ms of compute per 20 ms frame (encode + decode, from its offline speed)")
    return streams


def _cli_section(models: dict[str, Codec], model_args: dict[str, str], clips16: list[torch.Tensor], seconds: float,
                 work: Path) -> None:
    """Command-line round trips, each right after offline encode + decode of the same audio (the ratio's reference):
    :data:`CLI_ROUNDS` alternating rounds per model (one for the 24 kHz preset), the median round reported."""
    print(f"\n## 3. Command line: compress + decompress of a {_duration(seconds)} WAV (fresh processes, "
          f"start-up included, 1 thread; median of {CLI_ROUNDS} rounds, each after offline encode + decode of the "
          "same audio in 10 s pieces)\n")
    wav_path = write_speech(work / "cli_input.wav", clips16, seconds, 16000)
    wav16 = audio.load(wav_path, 16000, mono=True)[0][0]  # [T]
    opus = time_opus_cli(wav_path, parse_baselines(OPUS)[0], work)
    warm_up = write_speech(work / "cli_warm_up.wav", clips16, 3.0, 16000)
    rows: dict[str, tuple[tuple[Run, Run], list[float]]] = {}
    for name, model in models.items():
        wav = audio.resample(wav16, 16000, model.sample_rate)
        time_cli(model_args[name], warm_up, work)  # untimed: caches a bundled model's decoder, as a user's first file
        rounds = []
        for _ in range(1 if name == REFERENCE_SPEC else CLI_ROUNDS):
            offline_x = _offline_round_trip_x(time_codec(model, wav, 1))
            runs = time_cli(model_args[name], wav_path, work)
            rounds.append((_round_trip_x(seconds, runs) / offline_x, runs))
        rounds.sort(key=lambda r: r[0])
        rows[name] = (rounds[len(rounds) // 2][1], [ratio for ratio, _ in rounds])
    ref_x = _round_trip_x(seconds, rows[REFERENCE_SPEC][0])
    opus_x = _round_trip_x(seconds, opus)
    print("| codec | compress s | decompress s | round trip x | / offline encode+decode x (all rounds) | "
          "/ 24 kHz preset | / libopus |\n|---|---|---|---|---|---|---|")
    for name, ((enc, dec), ratios) in rows.items():
        x = _round_trip_x(seconds, (enc, dec))
        every = ", ".join(f"{r:.2f}" for r in ratios)
        print(f"| {name} | {enc.wall_s:.1f} | {dec.wall_s:.1f} | {x:.1f} | {statistics.median(ratios):.2f} "
              f"({every}) | {x / ref_x:.2f} | {x / opus_x:.3f} |")
    print(f"| libopus (ffmpeg) | {opus[0].wall_s:.1f} | {opus[1].wall_s:.1f} | {opus_x:.1f} | - | "
          f"{opus_x / ref_x:.2f} | 1 |")
    for name, ((enc, dec), _) in rows.items():
        if model_args[name] in pretrained_names():  # decompressed on the cached decoder above: PyTorch's for scale
            time_cli(model_args[name], wav_path, work)
            pytorch = run_codec("decompress", work / "cli.rvq", work / "cli.wav", "--model", model_args[name], "--quiet")
            print(f"\n{name}: decompress above on the cached onnxruntime decoder (codec.fileformat.onnx_decode); "
                  f"on PyTorch (`--model {model_args[name]}`) {pytorch.wall_s:.1f} s, peak RSS {pytorch.peak_mb:.0f} MB "
                  f"against {dec.peak_mb:.0f} MB")


def _startup_section(model_arg: str, clips16: list[torch.Tensor], work: Path) -> None:
    print("\n## 4. Start-up (fresh process: wall time and peak RSS)\n")
    packed = work / "startup.rvq"
    run_codec("compress", write_speech(work / "startup.wav", clips16, 3.0, 16000), packed, "--model", model_arg,
              "--quiet")
    kbps = f"{load_model(model_arg).bandwidths_kbps[0]:g}"
    rows = {
        "python (bare interpreter)": run_python("pass"),
        "import torch": run_python("import torch"),
        "codec --help": run_codec("--help"),
        "codec info FILE": run_codec("info", packed),
        "codec truncate FILE --kbps": run_codec("truncate", packed, work / "truncated.rvq", "--kbps", kbps),
        "ffmpeg -version": run_program("ffmpeg", "-version"),
    }
    if model_arg in pretrained_names():  # the file names its model: decompressed on the cached decoder
        rows["codec decompress FILE (3 s, cached decoder)"] = _decompress_cached(packed, work)
    print("| command | wall s | peak RSS MB |\n|---|---|---|")
    for name, run in rows.items():
        print(f"| {name} | {run.wall_s:.2f} | {run.peak_mb:.0f} |")


def _decompress_cached(packed: Path, work: Path) -> Run:
    """``codec decompress`` of a bundled model's file, once to cache its decoder and then timed."""
    run_codec("decompress", packed, work / "startup.wav", "--quiet")
    return run_codec("decompress", packed, work / "startup.wav", "--quiet")


def _memory_section(main_spec: str, model_args: dict[str, str], clips16: list[torch.Tensor],
                    durations: list[float], work: Path) -> None:
    print("\n## 5. Memory: compress then decompress a speech WAV (fresh process, 1 thread; MB)\n")
    torch_mb = run_python("import torch").peak_mb
    print(f"`import torch` alone: peak RSS {torch_mb:.0f} MB\n")
    print("| model | input | RSS after import | after loading | peak compress | peak decompress | "
          "peak above import torch alone | compress s | decompress s | libopus encode peak |\n"
          "|---|---|---|---|---|---|---|---|---|---|")
    for seconds in durations:
        wav_path = write_speech(work / "memory_input.wav", clips16, seconds, 16000)
        opus_mb = time_opus_cli(wav_path, parse_baselines(OPUS)[0], work)[0].peak_mb
        # The reference preset runs several times slower: it is measured on the shortest input only.
        names = [main_spec] + ([REFERENCE_SPEC] if seconds == durations[0] and REFERENCE_SPEC != main_spec else [])
        for name in names:
            m = measure_memory(model_args[name], wav_path, work)
            peak = max(m["compress_peak_mb"], m["decompress_peak_mb"])
            print(f"| {name} | {_duration(seconds)} | {m['import_mb']:.0f} | {m['loaded_mb']:.0f} | "
                  f"{m['compress_peak_mb']:.0f} | {m['decompress_peak_mb']:.0f} | {peak - torch_mb:.0f} | "
                  f"{m['compress_s']:.1f} | {m['decompress_s']:.1f} | {opus_mb:.0f} |", flush=True)


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    if seconds >= 60:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


if __name__ == "__main__":  # python -m eval.bench: the same as `codec bench`
    from codec.cli import run_module

    run_module("bench")
