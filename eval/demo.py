"""``make demo``: compress and decompress real speech with the bundled model, next to Opus.

    codec demo [--model speech-16khz] [--kbps 2,4] [--opus 6,8] [--out demo-results] [FILE ...]   (or python -m eval.demo)

For each file it writes a compressed file at each bitrate, decodes it back,
and prints the bitrate measured from the file's bytes (header included) and
ViSQOL (speech mode, lattice mapping) and PESQ-WB against the original; the
same for Opus (ffmpeg libopus, VoIP mode; payload bitrate measured by
ffprobe). Without files it takes the development-split clips in the
checkout's ``tests/data`` (speakers never seen in training): the demo is a
script over :mod:`eval`, run from a checkout of the repository. It then writes a
listening page (``codec eval``'s, :mod:`eval.listen`) of the same files to
``--out``: every file as heard and seen (spectrogram) through each bitrate,
the decoder on the unquantized latent and Opus, and prints its path.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from codec import audio
from codec.errors import InputError
from codec.fileformat.compress import compress, decompress
from codec.resolve import LoadedModel, load_model
from eval.baselines import parse_baselines, round_trip
from eval.evaluate import evaluate
from eval.listen import write_page
from eval.metrics import pesq_wb, visqol_speech
from eval.report import to_json, write_report

#: The checkout's clips of the development split (16 kHz mono speech; tests/data/README.md).
CLIPS_DIR = Path(__file__).resolve().parents[1] / "tests" / "data"
CLIP_PATTERNS = ("asterisk_*.wav", "codec2_*.wav")


def default_clips(folder: Path = CLIPS_DIR) -> list[Path]:
    """The development-split clips of ``folder``.

    Raises:
        InputError: If there are none (not a checkout): says to pass files.
    """
    clips = [p for pattern in CLIP_PATTERNS for p in sorted(folder.glob(pattern))]
    if not clips:
        raise InputError(
            f"no speech clips in {folder} (the demo's default, present in a checkout of rvq-codec); "
            "pass speech files: python -m eval.demo FILE ..."
        )
    return clips


def check_files(files: list[Path]) -> list[Path]:
    """``files`` if each is an existing file.

    Raises:
        InputError: Naming the first missing file.
    """
    for path in files:
        if not path.is_file():
            raise InputError(f"{path} does not exist; pass speech files (WAV, FLAC, ...) to the demo")
    return files


def _scores(ref: torch.Tensor, deg: torch.Tensor, rate: int) -> tuple[float, float]:
    r, d = ref.numpy(), deg.numpy()
    return visqol_speech(r, d, rate), pesq_wb(r, d, rate)


def demo(files: list[Path], model: str | None, kbps_list: list[float], opus_list: list[int], out: Path) -> int:
    """Prints the demo's table for ``files`` (the checkout's development clips when empty) and writes its page.

    Args:
        files: Speech files; none for :func:`default_clips`.
        model: What ``--model`` names (:func:`codec.resolve.load_model`); None for the default model.
        kbps_list: Our model's nominal bitrates.
        opus_list: Opus bitrates for comparison.
        out: Folder of the listening page ``index.html``.

    Returns:
        The exit status, 0.
    """
    torch.set_num_threads(1)
    files = check_files(files) if files else default_clips()
    loaded = load_model(model)
    rows = run(loaded, files, kbps_list, opus_list)
    print(f"\nmodel {loaded.name} ({loaded.model_id}), {len(files)} file(s) of real speech")
    print(f"{'codec':18s} {'kbps (measured)':>16s} {'ViSQOL speech (lattice)':>24s} {'PESQ-WB':>8s} {'x real time':>12s}")
    for name, kbps, visqol, pesq, speed in rows:
        speed_text = f"{speed:12.1f}" if speed else f"{'':12s}"
        print(f"{name:18s} {kbps:16.2f} {visqol:24.2f} {pesq:8.2f} {speed_text}")
    page = write_listening_page(loaded, files, kbps_list, opus_list, out)
    print(f"\nlistening page: {page.resolve()} (open it in a browser)")
    return 0


def write_listening_page(
    loaded: LoadedModel, files: list[Path], kbps_list: list[float], opus_list: list[int], out: Path
) -> Path:
    """Evaluates ``files`` as ``codec eval`` does (ViSQOL, PESQ) and writes its report and listening page to ``out``.

    Returns:
        The path of ``index.html``.
    """
    baselines = parse_baselines(",".join(f"opus:{k}" for k in opus_list))
    result = evaluate(loaded.codec, files, kbps_list, baselines, ["visqol", "pesq"], progress=False,
                      model_spec=loaded.name, tables=loaded.tables, keep=files)
    report = to_json(result, ", ".join(f.name for f in files))
    write_report(report, out)
    return write_page(report, result.clips, out)


def run(loaded: LoadedModel, files: list[Path], kbps_list: list[float], opus_list: list[int]) -> list[tuple]:
    """Rows ``(codec, measured kbps, ViSQOL, PESQ, encode+decode speed)`` averaged over ``files``."""
    rate = loaded.codec.sample_rate
    rows = []
    with tempfile.TemporaryDirectory(prefix="codec-demo-") as tmp:
        refs = [audio.load(f, target_rate=rate, mono=True)[0][0] for f in files]
        for kbps in kbps_list:
            results = []
            for i, (path, ref) in enumerate(zip(files, refs)):
                packed, restored = Path(tmp) / f"{i}-{kbps}.rvq", Path(tmp) / f"{i}-{kbps}.wav"
                start = time.perf_counter()
                compress(path, packed, loaded, bandwidth_kbps=kbps)
                decompress(packed, restored, loaded)
                elapsed = time.perf_counter() - start
                out = audio.load(restored, target_rate=rate, mono=True)[0][0]
                seconds = ref.shape[-1] / rate
                results.append((packed.stat().st_size * 8 / seconds / 1000, *_scores(ref, out, rate), seconds / elapsed))
            rows.append((f"ours {kbps:g} kbps", *[sum(c) / len(c) for c in zip(*results)]))
        for setting in parse_baselines(",".join(f"opus:{k}" for k in opus_list)):
            results = []
            for ref in refs:
                trip = round_trip(ref, rate, setting)
                results.append((trip.kbps, *_scores(ref, trip.decoded, rate)))
            rows.append((setting.label, *[sum(c) / len(c) for c in zip(*results)], None))
    return rows


if __name__ == "__main__":  # python -m eval.demo: the same as `codec demo`
    from codec.cli import run_module

    run_module("demo")
