"""The same sentences in several voices: a speaker probe that what is said cannot pass.

On the development split every speaker speaks another language and reads
other texts, so a codebook that carries only the phones still tells the
speakers apart by their words. Here each sentence is synthesised by every
English voice of festival on the machine (Debian packages ``festival``,
``festvox-kallpc16k``, ``festvox-kdlpc16k``, ``festvox-us-slt-hts``: two diphone
voices and one HTS voice), so the words are the same for every speaker and only
the voice differs. The manifest rows carry ``"speaker"`` (the voice) and
``"text"``; :func:`eval.phonetic.speaker_split` holds out the same sentences
for every speaker when rows have a text.

    codec voices --texts ~/data/rvq/aligned.jsonl --limit 200 --out ~/data/rvq/voices
    codec phonetic --model speech-16khz --dev ~/data/rvq/voices/voices.jsonl --per-speaker 200
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from tqdm import tqdm

from codec import audio, sources
from codec.atomic import write_jsonl
from codec.errors import InputError

SAMPLE_RATE_HZ = 16_000
#: Speaker name -> festival voice function: the English voices of Debian main.
VOICES = {"kal": "voice_kal_diphone", "ked": "voice_ked_diphone", "slt": "voice_cmu_us_slt_arctic_hts"}
#: Licences of the voices' packages (``/usr/share/doc/festvox-*/copyright``).
LICENCES = {"kal": "EST-2003", "ked": "EST-2003", "slt": "BSD-3-clause"}
_LEADING = re.compile(r"^[^\w]+")
INSTALL = "sudo apt-get install festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts"


def available_voices() -> list[str]:
    """The speakers of :data:`VOICES` whose festival voice loads on this machine.

    Raises:
        InputError: If festival's ``text2wave`` is missing.
    """
    if shutil.which("text2wave") is None:
        raise InputError(f"festival's text2wave is not installed: {INSTALL}")
    found = []
    for speaker, voice in VOICES.items():
        probe = subprocess.run(["festival", "--batch", f"({voice})"], capture_output=True, text=True, check=False)
        if probe.returncode == 0 and "error" not in (probe.stdout + probe.stderr).lower():
            found.append(speaker)
    return found


def synthesize(text: str, speaker: str, path: Path) -> float:
    """Writes ``text`` in ``speaker``'s voice to ``path`` as a 16 kHz mono WAV, atomically; returns its seconds.

    Raises:
        InputError: If festival fails or renders no audio.
    """
    with tempfile.TemporaryDirectory(prefix="voices-") as tmp:
        raw = Path(tmp) / "raw.wav"
        run = subprocess.run(["text2wave", "-eval", f"({VOICES[speaker]})", "-o", str(raw)], input=text,
                             capture_output=True, text=True, check=False)
        if run.returncode != 0 or not raw.is_file():
            raise InputError(f"festival could not say {text!r} in voice {speaker}: {run.stderr.strip()[-200:]}")
        wav, _ = audio.load(raw, SAMPLE_RATE_HZ, mono=True)  # [1, T]; an empty rendering raises InputError
    path.parent.mkdir(parents=True, exist_ok=True)
    audio.save(path, wav, SAMPLE_RATE_HZ)
    return wav.shape[-1] / SAMPLE_RATE_HZ


def read_texts(manifest: Path, limit: int | None = None) -> list[str]:
    """The distinct ``"text"`` values of a JSONL manifest, in order (the first ``limit``), without leading
    punctuation (festival 2.5 crashes on a sentence that starts with "...").

    Raises:
        InputError: If no row has a text.
    """
    sources.check_limit(limit)
    cleaned = (_LEADING.sub("", str(e.row.get("text", ""))).strip() for e in sources.read_manifest(manifest))
    texts = list(dict.fromkeys(t for t in cleaned if t))
    if not texts:
        raise InputError(f"{manifest} has no rows with a \"text\" to synthesise")
    return texts[:limit]


def build(texts: list[str], out: Path, speakers: list[str] | None = None, quiet: bool = False) -> Path:
    """Synthesises every text in every voice to ``out/<speaker>/<hash of the text>.wav``; returns the manifest
    ``out/voices.jsonl``.

    Files already written are kept, so an interrupted build resumes. A sentence that a voice cannot say is left
    out for every voice (and counted on standard output).

    Raises:
        InputError: If fewer than two voices are available, or festival says no sentence.
    """
    speakers = speakers if speakers is not None else available_voices()
    if len(speakers) < 2:
        raise InputError(f"a speaker probe needs two voices or more, festival has {speakers}: {INSTALL}")
    rows, unsaid = [], []
    for text in tqdm(texts, desc="voices", unit="sentence", disable=quiet):
        name = hashlib.sha1(text.encode()).hexdigest()[:16]  # named by the text: a resumed build cannot mix them up
        paths = [out / speaker / f"{name}.wav" for speaker in speakers]
        try:
            seconds = [_seconds(p) if p.is_file() else synthesize(text, s, p) for s, p in zip(speakers, paths)]
        except InputError:  # a sentence one voice cannot say is left out for all: every speaker says the same
            unsaid.append(text)
            for path in paths:
                path.unlink(missing_ok=True)
            continue
        rows += [{"path": str(p.resolve()), "duration_s": round(d, 4), "speaker": s, "source": "festival",
                  "licence": LICENCES[s], "text": text} for s, p, d in zip(speakers, paths, seconds)]
    if unsaid:
        print(f"left out {len(unsaid)} of {len(texts)} sentences that festival could not say, e.g. {unsaid[0]!r}")
    if not rows:
        raise InputError(f"festival said none of the {len(texts)} sentences: {INSTALL}")
    manifest = out / "voices.jsonl"
    write_jsonl(manifest, rows)
    return manifest


def _seconds(path: Path) -> float:
    info = audio.read_info(path)
    return info.frames / info.samplerate
