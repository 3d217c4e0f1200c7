"""Build the real-speech corpus from recordings shipped in Debian packages.

Usage::

    codec corpus --out DIR [--work DIR]     (or python -m train.corpus, make data)

Steps (the sources and the split rules are those of the project's data notes):

1. ``fetch_packages``: ``apt-get download`` + ``dpkg -x`` each package into
   ``WORK/pkgs/<name>`` (nothing is installed; extracted packages are reused).
2. ``list_utterances``: assign every sound file a split, a speaker and a licence.
3. ``convert_g722`` then ``process_all`` (2 processes): decode to mono 16 kHz,
   drop files with under 0.3 s of speech, trim silence with the Silero VAD,
   write ``DIR/wav/<split>/<speaker>/<name>.wav`` as 16-bit PCM (existing
   outputs are reused, so delete ``DIR/wav`` to rebuild them).
4. ``write_jsonl``: one manifest per split, ``DIR/<split>.jsonl``.
5. ``write_dev_clips``: 10 s clips of the dev speakers in ``DIR/dev_clips/``.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from codec.atomic import atomic_path, write_jsonl
from codec.errors import CodecError

SAMPLE_RATE_HZ = 16_000
CLIP_SAMPLES = 10 * SAMPLE_RATE_HZ  # 10 s clips for ViSQOL / PESQ / DNSMOS
CLIP_GAP_S = 0.2
MAX_CLIPS_PER_SPEAKER = 12
VAD_MARGIN_S = 0.1  # silence kept before the first and after the last speech
MIN_SPEECH_S = 0.3  # files with less detected speech are dropped
NUM_WORKERS = 2

ASTERISK_LANGS = ("en", "es", "fr", "it")
ASTERISK_SPLITS = {"fr": "train", "es": "dev", "it": "dev", "en": "aligned"}
# The packages' debian/copyright: CC-BY-SA-3.0, except it-* (Carlo Flora) which is CC-BY-3.0.
ASTERISK_LICENCES = {"en": "CC-BY-SA-3.0", "es": "CC-BY-SA-3.0", "fr": "CC-BY-SA-3.0", "it": "CC-BY-3.0"}
TUXPAINT_SPLITS = {lang: "train" for lang in ("be", "bg", "ca", "es", "fr", "ro", "ru", "lt", "nl", "en", "ml")}
TUXPAINT_SPLITS.update({"el": "dev", "da": "dev"})
KLETTRES_EXCLUDED = {"da", "it"}
CODEC2_FILES = {"speech_orig_16k.wav", "wia_16kHz.wav"}
# gcin-voice holds two voices; its debian/copyright: */3.ogg by Edward Der-Hua Liu
# (GPL-3 or LGPL-3), */5.ogg by Chu Lo / ChionMeilin (CC-BY-3).
GCIN_VOICES = {"3": "GPL-3 or LGPL-3", "5": "CC-BY-3.0"}
PACKAGES = (
    "tuxpaint-stamps-default",
    "klettres-data",
    "gcin-voice",
    "codec2-examples",
    *(f"asterisk-core-sounds-{lang}-g722" for lang in ASTERISK_LANGS),
    *(f"asterisk-core-sounds-{lang}" for lang in ASTERISK_LANGS),
)
#: Audio inside the Debian packages (raw G.722 included, converted with ffmpeg); not a listing of user folders
#: (that is codec.sources.AUDIO_SUFFIXES).
PACKAGE_AUDIO_SUFFIXES = (".ogg", ".g722", ".wav")
SPLITS = ("train", "dev", "aligned")


class CorpusError(CodecError):
    """A missing tool or a failed download; the message says what to do."""


@dataclass(frozen=True)
class Assignment:
    """Where one source file goes."""

    split: str
    speaker: str
    licence: str


@dataclass(frozen=True)
class Utterance:
    """One source file and where its decoded WAV goes."""

    src: Path
    out: Path
    source: str  # Debian package name
    assignment: Assignment
    text: str | None = None


# ---------------------------------------------------------------- 1. fetch
def require_tools(names: Iterable[str] = ("apt-get", "dpkg", "ffmpeg")) -> None:
    """Raises `CorpusError` saying what to install when a tool or the VAD is missing."""
    hints = {
        "apt-get": "run on Debian/Ubuntu (package apt)",
        "dpkg": "run on Debian/Ubuntu (package dpkg)",
        "ffmpeg": "install it with `sudo apt-get install ffmpeg`",
    }
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        raise CorpusError("; ".join(f"`{name}` not found: {hints[name]}" for name in missing))
    if importlib.util.find_spec("silero_vad") is None or importlib.util.find_spec("onnxruntime") is None:
        raise CorpusError("the Silero VAD is missing: run `pip install 'rvq-codec[data]'` (silero-vad, onnxruntime)")


def fetch_package(name: str, work: Path) -> Path:
    """Downloads and extracts one package into ``work/pkgs/name``, unless already done."""
    dest = work / "pkgs" / name
    if (dest / ".extracted").exists():
        return dest
    debs = work / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    if not list(debs.glob(f"{name}_*.deb")):
        done = subprocess.run(["apt-get", "download", name], cwd=debs, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise CorpusError(
                f"`apt-get download {name}` failed: {done.stderr.strip()}\n"
                "Run `sudo apt-get update` first; check the name with `apt-cache search`."
            )
    deb = max(debs.glob(f"{name}_*.deb"))
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    done = subprocess.run(["dpkg", "-x", str(deb), str(dest)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise CorpusError(
            f"`dpkg -x {deb}` failed: {done.stderr.strip()}\nDelete {deb} and re-run to download it again."
        )
    (dest / ".extracted").touch()
    return dest


def fetch_packages(names: Iterable[str], work: Path) -> dict[str, Path]:
    """Fetches every package; returns package name -> extracted root."""
    return {name: fetch_package(name, work) for name in names}


# ---------------------------------------------------------------- 2. assign
def classify(package: str, relpath: str) -> Assignment | None:
    """Split, speaker and licence of a file given its path inside its package.

    Returns:
        None for files that belong to no split (other languages, non-speech).
    """
    parts = relpath.split("/")
    if package == "tuxpaint-stamps-default":
        match = re.search(r"_desc(?:_([a-z]+))?\.ogg(?:\.ogg)?$", parts[-1])
        lang = (match.group(1) or "en") if match else None  # plain `_desc.ogg` is English
        split = TUXPAINT_SPLITS.get(lang or "")
        return Assignment(split, f"tuxpaint-{lang}", "GPL-2") if split else None
    if package == "klettres-data":
        lang = parts[-3] if len(parts) >= 3 and parts[-2] in ("alpha", "syllab") else None
        if lang is None or lang in KLETTRES_EXCLUDED or not relpath.endswith(".ogg"):
            return None
        return Assignment("train", f"klettres-{lang}", "GPL-2+")
    if package == "gcin-voice":
        voice = parts[-1].removesuffix(".ogg")
        return Assignment("train", f"gcin-voice{voice}", GCIN_VOICES[voice]) if voice in GCIN_VOICES else None
    if package == "codec2-examples":
        return Assignment("dev", "codec2", "LGPL-2.1") if parts[-1] in CODEC2_FILES else None
    match = re.fullmatch(r"asterisk-core-sounds-([a-z]+)-g722", package)
    if match and "sounds" in parts[:-2] and relpath.endswith(".g722"):
        voice = parts[parts.index("sounds") + 1]  # e.g. it_IT_m_Carlo
        if parts[parts.index("sounds") + 2] == "silence":
            return None
        lang = match.group(1)
        speaker = f"asterisk-{lang}-{voice.split('_')[-1].lower()}"
        return Assignment(ASTERISK_SPLITS[lang], speaker, ASTERISK_LICENCES[lang])
    return None


def parse_transcripts(lines: Iterable[str]) -> dict[str, str]:
    """Parses Asterisk ``name: text`` lines (``;`` starts a comment) into name -> text."""
    out = {}
    for line in lines:
        line = line.strip().lstrip("\ufeff")
        name, sep, text = line.partition(": ")
        if line and not line.startswith(";") and sep and " " not in name:
            out[name] = text.strip()
    return out


def asterisk_prompt_name(relpath: str) -> str:
    """``usr/share/asterisk/sounds/en_US_f_Allison/digits/1.g722`` -> ``digits/1``."""
    parts = relpath.split("/")
    return "/".join(parts[parts.index("sounds") + 2 :]).removesuffix(".g722")


def load_transcripts(roots: dict[str, Path], lang: str) -> dict[str, str]:
    """Reads ``core-sounds-<lang>.txt.gz`` from the ``asterisk-core-sounds-<lang>`` package."""
    files = list(roots[f"asterisk-core-sounds-{lang}"].rglob(f"core-sounds-{lang}.txt.gz"))
    if not files:
        raise CorpusError(
            f"core-sounds-{lang}.txt.gz missing from asterisk-core-sounds-{lang}; "
            f"delete {roots[f'asterisk-core-sounds-{lang}']} and re-run."
        )
    with gzip.open(files[0], "rt", encoding="utf-8-sig") as f:
        return parse_transcripts(f)


def list_utterances(roots: dict[str, Path], wav_dir: Path) -> tuple[list[Utterance], Counter[str]]:
    """Walks the extracted packages; returns the utterances and counts of skipped prompts."""
    texts = load_transcripts(roots, "en")
    utterances, skipped = [], Counter()
    for package, root in sorted(roots.items()):
        for src in sorted(p for p in root.rglob("*") if p.suffix in PACKAGE_AUDIO_SUFFIXES and p.is_file()):
            relpath = src.relative_to(root).as_posix()
            assignment = classify(package, relpath)
            if assignment is None:
                continue
            text = None
            if assignment.split == "aligned":
                text = texts.get(asterisk_prompt_name(relpath))
                if not text or re.fullmatch(r"\[.*\]", text):  # "[beep tone]" is not speech
                    skipped[f"{package}: no spoken transcript"] += 1
                    continue
            stem = output_stem(relpath)
            out = wav_dir / assignment.split / assignment.speaker / f"{stem}.wav"
            utterances.append(Utterance(src, out, package, assignment, text))
    return utterances, skipped


def output_stem(relpath: str) -> str:
    """``usr/share/tuxpaint/stamps/a/cat_desc_fr.ogg`` -> ``tuxpaint__stamps__a__cat_desc_fr``."""
    path = relpath.removeprefix("usr/share/")
    while path.endswith(PACKAGE_AUDIO_SUFFIXES):  # also strips the odd `_desc_da.ogg.ogg`
        path = path[: path.rindex(".")]
    return path.replace("/", "__")


# ---------------------------------------------------------------- 3. decode + VAD
def ffmpeg_input(src: Path) -> list[str]:
    """ffmpeg input options; raw G.722 streams have no header, so name the format."""
    return ["-f", "g722", "-i", str(src)] if src.suffix == ".g722" else ["-i", str(src)]


def convert_g722(utterances: list[Utterance], cache: Path, batch: int = 100) -> list[Utterance]:
    """Converts the G.722 sources to 16 kHz WAVs in ``cache``, ``batch`` files per ffmpeg call.

    Starting ffmpeg costs about a second on a busy machine, so one call decodes many
    files. Existing WAVs are reused.

    Returns:
        The utterances, with ``src`` pointing at the converted WAV for G.722 ones.
    """
    todo = [u for u in utterances if u.src.suffix == ".g722"]
    wavs = {u.src: cache / u.assignment.speaker / u.out.name for u in todo}
    pending = [u.src for u in todo if not wavs[u.src].exists()]
    for i in range(0, len(pending), batch):
        inputs, outputs = [], []
        for k, src in enumerate(pending[i : i + batch]):
            wavs[src].parent.mkdir(parents=True, exist_ok=True)
            inputs += ffmpeg_input(src)
            outputs += ["-map", f"{k}:a", "-ac", "1", "-ar", str(SAMPLE_RATE_HZ), "-c:a", "pcm_s16le"]
            outputs += [str(wavs[src].with_suffix(".tmp.wav"))]
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *inputs, *outputs], check=False)
        for src in pending[i : i + batch]:  # a file ffmpeg could not decode is left for `decode`
            if wavs[src].with_suffix(".tmp.wav").exists():
                os.replace(wavs[src].with_suffix(".tmp.wav"), wavs[src])
    return [replace(u, src=wavs[u.src]) if u.src in wavs and wavs[u.src].exists() else u for u in utterances]


def decode(src: Path) -> np.ndarray:
    """Decodes any source file to mono float32 at 16 kHz, shape ``[T]``.

    soundfile reads WAV and Ogg Vorbis in-process; anything else goes through ffmpeg.
    """
    try:
        audio, rate = sf.read(str(src), dtype="float32", always_2d=True)  # [T, C]
        return resample(audio.mean(axis=1), rate, SAMPLE_RATE_HZ)
    except sf.LibsndfileError:
        cmd = ["ffmpeg", "-nostdin", "-v", "error", *ffmpeg_input(src), "-ac", "1", "-ar", str(SAMPLE_RATE_HZ)]
        raw = subprocess.run([*cmd, "-f", "s16le", "-"], capture_output=True, check=True).stdout
        return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited sinc resampling of a ``[T]`` signal to ``[T * rate_out / rate_in]``."""
    if rate_in == rate_out:
        return audio
    import torch
    import torchaudio.functional

    return torchaudio.functional.resample(torch.from_numpy(audio), rate_in, rate_out).numpy()


def trim_bounds(
    timestamps: list[dict[str, int]], num_samples: int, margin: int = int(VAD_MARGIN_S * SAMPLE_RATE_HZ)
) -> tuple[int, int, float]:
    """Returns ``(start, end, speech_s)``: the speech span widened by ``margin`` samples."""
    if not timestamps:
        return 0, 0, 0.0
    speech = sum(t["end"] - t["start"] for t in timestamps) / SAMPLE_RATE_HZ
    start = max(0, timestamps[0]["start"] - margin)
    return start, min(num_samples, timestamps[-1]["end"] + margin), speech


def write_wav_atomic(path: Path, audio: np.ndarray, rate: int = SAMPLE_RATE_HZ) -> None:
    """Writes 16-bit PCM through a temporary file so readers never see half a WAV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        sf.write(tmp, np.clip(audio, -1.0, 32767 / 32768), rate, subtype="PCM_16", format="WAV")


_VAD: Any = None


def _init_worker() -> None:
    global _VAD
    import torch
    from silero_vad import load_silero_vad

    torch.set_num_threads(1)
    _VAD = load_silero_vad(onnx=True)  # the ONNX model ships inside the wheel


def process_one(utt: Utterance) -> tuple[float | None, str]:
    """Decodes, trims and writes one utterance; returns ``(duration_s, skip reason)``."""
    try:
        if utt.out.exists():
            return sf.info(str(utt.out)).duration, ""
        import torch
        from silero_vad import get_speech_timestamps

        audio = decode(utt.src)
        stamps = get_speech_timestamps(torch.from_numpy(audio), _VAD, sampling_rate=SAMPLE_RATE_HZ, speech_pad_ms=0)
        start, end, speech_s = trim_bounds(stamps, len(audio))
        if speech_s < MIN_SPEECH_S:
            return None, f"vad: less than {MIN_SPEECH_S} s of speech"
        write_wav_atomic(utt.out, audio[start:end])
        return (end - start) / SAMPLE_RATE_HZ, ""
    except Exception as error:  # noqa: BLE001 -- one bad file must not stop the build
        return None, f"{type(error).__name__}: {utt.src.name}: {error}"


def process_all(utterances: list[Utterance]) -> tuple[dict[str, list[dict[str, Any]]], Counter[str]]:
    """Runs `process_one` over 2 processes; returns manifest rows per split and skip counts."""
    rows: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    skipped: Counter[str] = Counter()
    errors = []
    with ProcessPoolExecutor(NUM_WORKERS, mp_context=get_context("spawn"), initializer=_init_worker) as pool:
        results = pool.map(process_one, utterances, chunksize=16)
        for i, (utt, (duration, reason)) in enumerate(zip(utterances, results)):
            if duration is not None:
                rows[utt.assignment.split].append(manifest_row(utt, duration))
            elif reason.startswith("vad:"):
                skipped[f"{utt.source}: {reason}"] += 1
            else:
                skipped[f"{utt.source}: decode error (first ones printed above)"] += 1
                errors.append(reason)
            if (i + 1) % 2000 == 0:
                print(f"  {i + 1}/{len(utterances)} files", file=sys.stderr, flush=True)
    for reason in errors[:10]:
        print(f"  skipped {reason}", file=sys.stderr)
    return rows, skipped


# ---------------------------------------------------------------- 4. manifests
def manifest_row(utt: Utterance, duration_s: float) -> dict[str, Any]:
    """The manifest line of one written WAV."""
    row = {
        "path": str(utt.out.resolve()),
        "duration_s": round(duration_s, 4),
        "speaker": utt.assignment.speaker,
        "source": utt.source,
        "licence": utt.assignment.licence,
    }
    return row | ({"text": utt.text} if utt.text is not None else {})


# ---------------------------------------------------------------- 5. dev clips
def build_clips(
    utterances: Iterable[np.ndarray],
    clip_samples: int = CLIP_SAMPLES,
    gap_samples: int = int(CLIP_GAP_S * SAMPLE_RATE_HZ),
    max_clips: int = MAX_CLIPS_PER_SPEAKER,
) -> list[np.ndarray]:
    """Concatenates consecutive ``[T]`` utterances, with silent gaps, into clips.

    A clip starts at an utterance onset and is cut at exactly ``clip_samples``;
    an utterance longer than one clip is first split into clip-long pieces. The
    material left after the last full clip is dropped.

    Returns:
        At most ``max_clips`` float32 arrays of shape ``[clip_samples]``.
    """
    clips: list[np.ndarray] = []
    parts: list[np.ndarray] = []
    filled = 0
    pieces = (u[i : i + clip_samples] for u in utterances for i in range(0, max(len(u), 1), clip_samples))
    for piece in pieces:
        if len(clips) == max_clips:
            break
        parts.append(np.asarray(piece, dtype=np.float32))
        filled += len(piece)
        if filled >= clip_samples:
            clips.append(np.concatenate(parts)[:clip_samples])
            parts, filled = [], 0
        else:
            parts.append(np.zeros(gap_samples, dtype=np.float32))
            filled += gap_samples
    return clips


def write_dev_clips(dev_rows: list[dict[str, Any]], out: Path) -> list[dict[str, Any]]:
    """Writes ``out/dev_clips/<speaker>_NN.wav`` per dev speaker; returns their manifest rows."""
    clip_dir = out / "dev_clips"
    shutil.rmtree(clip_dir, ignore_errors=True)
    by_speaker: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in dev_rows:
        by_speaker[row["speaker"]].append(row)
    rows = []
    for speaker, utts in sorted(by_speaker.items()):
        audio = (sf.read(u["path"], dtype="float32")[0] for u in sorted(utts, key=lambda u: u["path"]))
        for k, clip in enumerate(build_clips(audio)):
            path = clip_dir / f"{speaker}_{k:02d}.wav"
            write_wav_atomic(path, clip)
            rows.append(
                {
                    "path": str(path.resolve()),
                    "duration_s": CLIP_SAMPLES / SAMPLE_RATE_HZ,
                    "speaker": speaker,
                    "source": utts[0]["source"],
                    "licence": utts[0]["licence"],
                }
            )
    return rows


# ---------------------------------------------------------------- 6. summary
def summarize(manifests: dict[str, list[dict[str, Any]]]) -> str:
    """A text table of files and hours per split and per speaker."""
    lines = [f"{'split':<10} {'speaker':<24} {'files':>7} {'hours':>7}"]
    for split, rows in manifests.items():
        per_speaker: dict[str, list[float]] = defaultdict(list)
        for row in rows:
            per_speaker[row["speaker"]].append(row["duration_s"])
        for speaker, durations in sorted(per_speaker.items()):
            lines.append(f"{split:<10} {speaker:<24} {len(durations):>7} {sum(durations) / 3600:>7.3f}")
        total = sum(row["duration_s"] for row in rows) / 3600
        lines.append(f"{split:<10} {'TOTAL':<24} {len(rows):>7} {total:>7.3f}")
    return "\n".join(lines)


def build_corpus(out: Path, work: Path | None = None) -> None:
    """Fetches, decodes and trims every split into ``out`` (WAVs and one JSONL manifest per split), and prints a summary.

    Args:
        out: Output folder for the WAV files and manifests.
        work: Download and extraction folder, reused by a later run (default: ``OUT-work`` beside ``out``).

    Raises:
        CorpusError: A missing tool or a failed download, saying what to do.
    """
    out = out.resolve()
    work = (work or out.with_name(out.name + "-work")).resolve()
    require_tools()
    print(f"fetching {len(PACKAGES)} packages into {work}", file=sys.stderr)
    roots = fetch_packages(PACKAGES, work)
    utterances, skipped = list_utterances(roots, out / "wav")
    utterances = convert_g722(utterances, work / "g722-wav")
    print(f"decoding {len(utterances)} files with {NUM_WORKERS} workers", file=sys.stderr)
    manifests, vad_skipped = process_all(utterances)
    out.mkdir(parents=True, exist_ok=True)
    for split, split_rows in manifests.items():
        write_jsonl(out / f"{split}.jsonl", split_rows)
    manifests["dev_clips"] = write_dev_clips(manifests["dev"], out)
    write_jsonl(out / "dev_clips.jsonl", manifests["dev_clips"])
    print(summarize(manifests))
    for reason, count in sorted((skipped + vad_skipped).items()):
        print(f"skipped {count:>5}: {reason}")


if __name__ == "__main__":  # python -m train.corpus: the same as `codec corpus`
    from codec.cli import run_module

    run_module("corpus")
