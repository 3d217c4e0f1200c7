"""Measured bitrate, coding speed and memory of the compressed file format.

    codec bench-bitstream [--model DIR] [--data tests/data] [--memory-minutes 10]

For each speech clip of tests/data and each bitrate of the model, prints the
nominal bitrate and the bitrate measured from the file size (header
included) with entropy coding under the model's own tables (uniform for a
model without ``entropy.safetensors``), under tables fitted on the other
clips (leave one out, add-one smoothing), and bit-packed. Then the encode and
decode speed (seconds of audio per second, one thread) with and without
entropy coding, and the peak memory of compressing and decompressing a short
and a long file (real speech repeated), each in its own process.

Without ``--model`` it uses an untrained ``codec_16khz`` (seeded): its
codes are not those of a trained model, so the entropy-coding gains say
little yet; the real numbers come with the trained model.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch

from codec import audio
from codec.errors import InputError
from codec.fileformat.compress import compress, decompress, read_codes, read_info
from codec.fileformat.entropy import EntropyTables, fit_counts
from codec.network.presets import codec_16khz
from codec.resolve import LoadedModel, load_model

DATA_DIR = Path(__file__).resolve().parent.parent / "tests" / "data"

# The child reports its own peak (VmHWM): Linux's ru_maxrss would carry over the parent's through fork and exec.
_PEAK_RSS = """
import sys
from codec.fileformat.compress import compress, decompress
def peak_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
compress(sys.argv[1], sys.argv[2], sys.argv[3])
encode_mb = peak_mb()
decompress(sys.argv[2], sys.argv[4], sys.argv[3])
print(encode_mb, peak_mb())
"""


def _clip_codes(loaded: LoadedModel, path: Path) -> torch.Tensor:
    """All-codebook codes ``[C, n_q, F]`` of a clip, channels as a batch."""
    wav, _ = audio.load(path, target_rate=loaded.codec.sample_rate)  # [C, T]
    return loaded.codec.encode(wav[:, None, :]).codes


def bitrates(loaded: LoadedModel, clips: list[Path], work: Path) -> None:
    """Prints nominal and measured bits per second per clip and bitrate."""
    config = loaded.codec.config
    codes = {clip: _clip_codes(loaded, clip) for clip in clips}
    print(f"{'clip':<28}{'ch':>3}{'nominal':>10}{'own tables':>12}{'fitted':>10}{'packed':>10}{'framing':>10}"
          "   (kbps, all channels; framing: header, lengths and CRCs)")
    for clip in clips:
        others = [c for c in clips if c != clip] or [clip]
        fitted = EntropyTables(fit_counts([codes[c] for c in others], config.n_q, config.codebook_size))
        variants = {"own": loaded, "fitted": LoadedModel(loaded.codec, loaded.name, fitted, loaded.model_id)}
        info = sf.info(str(clip))
        for kbps in loaded.codec.bandwidths_kbps:
            sizes = {}
            for name, model in variants.items():
                compress(clip, work / f"{name}.rvq", model, kbps)
                sizes[name] = (work / f"{name}.rvq").stat().st_size
            compress(clip, work / "packed.rvq", loaded, kbps, entropy_coding=False)
            sizes["packed"] = (work / "packed.rvq").stat().st_size
            packed = read_info(work / "packed.rvq")
            sizes["framing"] = packed.file_bytes - sum(packed.codebook_bytes)
            rate = {k: v * 8 / info.duration / 1000 for k, v in sizes.items()}
            print(f"{clip.name[:27]:<28}{info.channels:>3}{kbps * info.channels:>10.3g}"
                  f"{rate['own']:>12.3f}{rate['fitted']:>10.3f}{rate['packed']:>10.3f}{rate['framing']:>10.3f}")


def speed(loaded: LoadedModel, clips: list[Path], work: Path) -> None:
    """Prints encode and decode speed with and without entropy coding."""
    seconds = sum(sf.info(str(c)).duration for c in clips)
    for entropy in (True, False):
        start = time.perf_counter()
        for i, clip in enumerate(clips):
            compress(clip, work / f"s{i}.rvq", loaded, entropy_coding=entropy)
        encode_s = time.perf_counter() - start
        start = time.perf_counter()
        for i, clip in enumerate(clips):
            decompress(work / f"s{i}.rvq", work / f"s{i}.wav", loaded)
        decode_s = time.perf_counter() - start
        label = "entropy-coded" if entropy else "bit-packed"
        print(f"{label:<14} encode {seconds / encode_s:6.1f}x real time, decode {seconds / decode_s:6.1f}x "
              f"({seconds:.1f} s of audio, all codebooks)")
    codes = [read_codes(work / f"s{i}.rvq", loaded)[1] for i in range(len(clips))]
    start = time.perf_counter()
    for c in codes:
        for k in range(c.shape[1]):
            loaded.tables.decode(k, loaded.tables.encode(k, c[:, k].reshape(-1).numpy()), c[:, k].numel())
    print(f"entropy coding alone (encode + decode): {seconds / (time.perf_counter() - start):.0f}x real time")


def memory(model_dir: Path, clip: Path, minutes: float, work: Path) -> None:
    """Prints the peak RSS of compress + decompress for 10 s and ``minutes`` of speech."""
    wav, rate = audio.load(clip)
    for seconds in (10.0, minutes * 60):
        repeats = int(seconds * rate // wav.shape[-1]) + 1
        long = torch.cat([wav] * repeats, dim=-1)[:, : int(seconds * rate)]
        source = work / "long.wav"
        audio.save(source, long, rate)
        del long
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", _PEAK_RSS, source, work / "long.rvq", model_dir, work / "long.wav"],
                             capture_output=True, text=True, check=True).stdout.split()
        print(f"{seconds:7.0f} s of {clip.name}: peak RSS {float(out[0]):.0f} MB after compress, "
              f"{float(out[1]):.0f} MB after decompress ({time.perf_counter() - start:.0f} s wall)")


def run(model: str | None, data: Path, memory_minutes: float) -> int:
    """Prints the bitrates, speeds and memory of the file format for ``model`` on the WAV clips of ``data``.

    Args:
        model: A model directory, or None for an untrained, seeded ``codec_16khz``.
        data: A folder of WAV clips.
        memory_minutes: Length of the long file of the memory test (0 skips it).
    """
    torch.set_num_threads(1)
    clips = sorted(data.glob("*.wav"))
    if not clips:
        raise InputError(f"no WAV files in {data}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir = Path(model) if model else work / "model"
        if not model:
            torch.manual_seed(0)
            codec_16khz().save_pretrained(model_dir)
        loaded = load_model(model_dir)
        print(f"model {loaded.name} (id {loaded.model_id}), {loaded.codec.frame_rate_hz:g} Hz frames, "
              f"{loaded.codec.config.n_q} x {loaded.codec.config.codebook_size} codes, tables {loaded.tables.digest}")
        bitrates(loaded, clips, work)
        speed(loaded, clips, work)
        if memory_minutes > 0:
            memory(model_dir, clips[0], memory_minutes, work)
    return 0


if __name__ == "__main__":  # python -m eval.bench_bitstream: the same as `codec bench-bitstream`
    from codec.cli import run_module

    run_module("bench-bitstream")
