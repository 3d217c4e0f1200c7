"""Classical speech codecs round-tripped through ffmpeg, for comparison in the same harness.

Each baseline takes the evaluation signal, resamples it to the codec's own
rate with :func:`codec.audio.resample` (the resampler used for our model),
encodes and decodes it with ffmpeg, and resamples the decoded signal back to
the evaluation rate. The codec's constant delay (codec2 about 11 ms, Speex
about 14 ms; Opus in Ogg and GSM have none left after ffmpeg) is removed by
finding the lag of the cross-correlation peak within :data:`MAX_DELAY_MS`, as
a real receiver would, so that waveform metrics (SI-SDR, mel, STOI) see an
aligned signal; the result is then cropped (or zero-padded) to the input length.

Bitrates are measured, never taken from the request: ``kbps`` is the sum of
the compressed packet sizes that ffprobe reads back from the file (the codec
payload) times 8, over the input duration. Container overhead is *not*
counted there: Ogg page headers and the OpusHead/OpusTags and Speex header
packets (Opus, Speex), the 7-byte codec2 file header. ``file_kbps`` is the
whole file's size over the same duration, overhead included. Raw GSM has no
container, so both agree.

=========  =========================================  ==========  =====================
name       ffmpeg encoder                             input rate  settings (requested)
=========  =========================================  ==========  =====================
opus       libopus, ``-application voip``, in Ogg     16 kHz      6, 8, 12 kbps
codec2     libcodec2 ``-mode 3200`` / ``1600``, .c2   8 kHz       3.2, 1.6 kbps
gsm        libgsm (GSM 06.10 full rate), raw          8 kHz       13 kbps (fixed)
speex      libspeex wideband CBR, in Ogg              16 kHz      6, 8, 12 kbps
=========  =========================================  ==========  =====================
"""

from __future__ import annotations

import functools
import math
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
import torch
from torch import Tensor

from codec import audio
from codec.errors import CodecError, InputError

MAX_DELAY_MS = 40.0  # longest codec delay searched for (codec2 1600 has 40 ms frames)


class BaselineError(CodecError):
    """ffmpeg is missing, lacks an encoder, or failed on a file."""


@dataclass(frozen=True)
class BaselineSetting:
    """One classical codec at one setting.

    Attributes:
        codec: Codec name (``opus``, ``codec2``, ``gsm``, ``speex``).
        requested_kbps: The bitrate asked of the encoder (reported beside the measured one).
        sample_rate: Rate in Hz the encoder is fed.
        encoder: ffmpeg encoder name.
        extension: File extension that selects the container.
        encode_args: ffmpeg output options that pick the encoder and its rate.
    """

    codec: str
    requested_kbps: float
    sample_rate: int
    encoder: str
    extension: str
    encode_args: tuple[str, ...]

    @property
    def label(self) -> str:
        """``"opus 6 kbps"``-style name."""
        return f"{self.codec} {self.requested_kbps:g} kbps"


def _opus(kbps: int) -> BaselineSetting:
    args = ("-c:a", "libopus", "-b:a", f"{kbps}k", "-application", "voip")
    return BaselineSetting("opus", kbps, 16000, "libopus", ".ogg", args)


def _codec2(bps: int) -> BaselineSetting:
    return BaselineSetting("codec2", bps / 1000, 8000, "libcodec2", ".c2", ("-c:a", "libcodec2", "-mode", str(bps)))


def _speex(kbps: int) -> BaselineSetting:
    return BaselineSetting("speex", kbps, 16000, "libspeex", ".spx", ("-c:a", "libspeex", "-b:a", f"{kbps}k"))


BASELINES: dict[str, tuple[BaselineSetting, ...]] = {
    "opus": tuple(_opus(k) for k in (6, 8, 12)),
    "codec2": tuple(_codec2(b) for b in (3200, 1600)),
    "gsm": (BaselineSetting("gsm", 13.0, 8000, "libgsm", ".gsm", ("-c:a", "libgsm", "-f", "gsm")),),
    "speex": tuple(_speex(k) for k in (6, 8, 12)),
}


def parse_baselines(spec: str) -> list[BaselineSetting]:
    """Settings named by ``spec``: comma-separated ``name`` (every setting) or ``name:kbps``.

    Example: ``"opus,codec2:1.6,gsm"``. An empty string selects none.

    Raises:
        InputError: On an unknown codec or setting.
    """
    settings: list[BaselineSetting] = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, kbps = item.partition(":")
        if name not in BASELINES:
            raise InputError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
        chosen = [s for s in BASELINES[name] if not kbps or math.isclose(s.requested_kbps, float(kbps))]
        if not chosen:
            offered = ", ".join(f"{name}:{s.requested_kbps:g}" for s in BASELINES[name])
            raise InputError(f"baseline {item!r} has no such setting; choose from {offered}")
        settings.extend(chosen)
    return settings


# ----- ffmpeg -----------------------------------------------------------------------------------
def _require_tools() -> None:
    for tool in ("ffmpeg", "ffprobe"):
        if shutil.which(tool) is None:
            raise BaselineError(
                f"{tool} is not installed; the baselines need it: run 'sudo apt-get install ffmpeg' "
                "(or leave them out with --baselines '')"
            )


@functools.lru_cache(maxsize=1)
def available_encoders() -> frozenset[str]:
    """Names of the audio encoders that this machine's ffmpeg offers."""
    _require_tools()
    out = _run(["ffmpeg", "-hide_banner", "-encoders"])
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith("A") and len(parts[0]) == 6 and parts[1] != "=":
            names.add(parts[1])
    return frozenset(names)


def check_available(setting: BaselineSetting) -> None:
    """Raises :class:`BaselineError` if ffmpeg cannot encode ``setting``."""
    if setting.encoder not in available_encoders():
        raise BaselineError(
            f"this ffmpeg has no {setting.encoder} encoder for the {setting.codec} baseline; "
            "install Debian's ffmpeg (sudo apt-get install ffmpeg) or leave the baseline out"
        )


def _run(cmd: list[str]) -> str:
    """Runs a command; returns stdout or raises :class:`BaselineError` with the end of stderr."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        _require_tools()
        raise
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise BaselineError(f"{cmd[0]} failed (exit {proc.returncode}) running {' '.join(cmd)}: {tail}")
    return proc.stdout


def encode_file(src: Path, dst: Path, setting: BaselineSetting) -> None:
    """Encodes the WAV ``src`` to ``dst`` with ffmpeg at ``setting``."""
    _run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", str(src),
          *setting.encode_args, str(dst)])


def decode_file(src: Path, dst: Path) -> None:
    """Decodes ``src`` to 16-bit WAV ``dst`` at the decoder's own rate."""
    _run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", str(src),
          "-c:a", "pcm_s16le", str(dst)])


def payload_bytes(path: Path) -> int:
    """Sum of the compressed packet sizes in ``path`` as ffprobe demuxes them (no container overhead)."""
    out = _run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries", "packet=size",
                "-of", "csv=p=0", str(path)])
    return sum(int(line.strip().rstrip(",")) for line in out.splitlines() if line.strip())


# ----- round trip -------------------------------------------------------------------------------
@dataclass
class RoundTrip:
    """A decoded baseline signal and its measured size.

    Attributes:
        decoded: Decoded audio ``[T]`` at the evaluation rate, as long as the input.
        payload_bytes: Compressed packet bytes (container overhead excluded).
        file_bytes: Bytes of the whole compressed file.
        duration_s: Input duration in seconds.
        delay_ms: Codec delay found and removed.
    """

    decoded: Tensor
    payload_bytes: int
    file_bytes: int
    duration_s: float
    delay_ms: float

    @property
    def kbps(self) -> float:
        """Measured payload bitrate in kbit/s."""
        return self.payload_bytes * 8 / self.duration_s / 1000

    @property
    def file_kbps(self) -> float:
        """Whole-file bitrate in kbit/s, container overhead included."""
        return self.file_bytes * 8 / self.duration_s / 1000


def estimate_delay(ref: Tensor, deg: Tensor, max_lag: int) -> int:
    """Lag in ``0..max_lag`` samples by which ``deg`` [T] trails ``ref`` [T] (cross-correlation peak)."""
    n_fft = 1 << (ref.shape[-1] + deg.shape[-1]).bit_length()
    spectrum = torch.fft.rfft(deg.double(), n_fft) * torch.fft.rfft(ref.double(), n_fft).conj()
    xcorr = torch.fft.irfft(spectrum, n_fft)  # xcorr[k] = sum_t deg[t + k] * ref[t]
    return int(xcorr[: max_lag + 1].argmax())


def round_trip(wav: Tensor, rate: int, setting: BaselineSetting) -> RoundTrip:
    """Encodes and decodes ``wav`` [T] (mono, at ``rate`` Hz) with a classical codec.

    Raises:
        BaselineError: If ffmpeg is missing, lacks the encoder, or fails.
        InputError: If ``wav`` is not a non-empty 1-D signal.
    """
    if wav.dim() != 1 or wav.numel() == 0:
        raise InputError(f"baselines take a mono signal [T], got shape {tuple(wav.shape)}")
    check_available(setting)
    with tempfile.TemporaryDirectory(prefix="codec-baseline-") as tmp:
        src, enc, dec = Path(tmp) / "in.wav", Path(tmp) / f"enc{setting.extension}", Path(tmp) / "out.wav"
        audio.save(src, audio.resample(wav, rate, setting.sample_rate)[None], setting.sample_rate)
        encode_file(src, enc, setting)
        decode_file(enc, dec)
        data, dec_rate = sf.read(str(dec), dtype="float32", always_2d=True)  # [T', C]
        decoded = audio.resample(torch.from_numpy(data.mean(axis=1)), dec_rate, rate)
        delay = estimate_delay(wav, decoded, int(rate * MAX_DELAY_MS / 1000))
        return RoundTrip(
            decoded=audio.fit_length(decoded[delay:], wav.shape[-1]),
            payload_bytes=payload_bytes(enc),
            file_bytes=enc.stat().st_size,
            duration_s=wav.shape[-1] / rate,
            delay_ms=1000 * delay / rate,
        )
