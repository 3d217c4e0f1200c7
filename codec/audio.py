"""Reading, writing and resampling audio files.

Files are read with soundfile (WAV, FLAC, OGG/Vorbis, MP3 and whatever else
libsndfile reads) as float32 ``[C, T]`` in [-1, 1]; every channel is kept.
Mono models take multichannel audio either mixed down (``mono=True``, the
mean of the channels) or one channel per batch item, as the caller chooses.
Resampling uses torchaudio's windowed-sinc resampler.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import soundfile as sf

from codec.atomic import atomic_path
from codec.errors import InputError

if TYPE_CHECKING:  # torch is imported where it is used: decompression on onnxruntime needs none
    from torch import Tensor

#: Output formats chosen from the file extension, with their default subtype.
WRITE_FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}
#: Highest sample rate each format can be written at. FLAC frame headers code rates above 65,535 Hz
#: only in steps of 10 Hz up to 655,350 Hz (FLAC format specification, "sample rate" bits); the
#: Vorbis encoder of libsndfile 1.2 crashes the process above 200,000 Hz (measured), so OGG stops at
#: 192,000 Hz, the highest rate of its setup tables; WAV stores the rate in 32 bits.
MAX_WRITE_RATES_HZ = {"WAV": (1 << 32) - 1, "FLAC": 655_350, "OGG": 192_000}


def fit_length(wav: Tensor, length: int) -> Tensor:
    """``wav`` [..., T] cropped or zero-padded on the right to ``length`` samples: [..., length]."""
    if wav.shape[-1] >= length:
        return wav[..., :length]
    import torch

    return torch.nn.functional.pad(wav, (0, length - wav.shape[-1]))


def resample(wav: Tensor, orig_rate: int, target_rate: int) -> Tensor:
    """Resamples ``wav`` [..., T] from ``orig_rate`` to ``target_rate`` Hz (no-op if equal)."""
    if orig_rate <= 0 or target_rate <= 0:
        raise InputError(f"sample rates must be positive, got {orig_rate} and {target_rate}")
    if orig_rate == target_rate:
        return wav
    import torchaudio.functional as AF  # here: about 10 MB and a second of start-up that most calls never need

    return AF.resample(wav, orig_rate, target_rate)


def check_write_rate(fmt: str, sample_rate: int, path: str | Path) -> None:
    """Refuses a sample rate that the output format ``fmt`` (a :data:`WRITE_FORMATS` name) cannot hold.

    Raises:
        InputError: Naming the rate, the format's limit and what to do.
    """
    limit = MAX_WRITE_RATES_HZ[fmt]
    odd_flac = fmt == "FLAC" and sample_rate > 65_535 and sample_rate % 10
    if sample_rate > limit or odd_flac:
        what = f"rates up to {limit} Hz" + (" (above 65535 Hz only multiples of 10)" if fmt == "FLAC" else "")
        raise InputError(f"cannot write {path} at {sample_rate} Hz: {fmt} holds {what}; write a .wav file instead")


def read_info(path: str | Path) -> sf._SoundFileInfo:
    """soundfile's info (rate, channels, frames) of ``path``, or :class:`InputError`."""
    try:
        return sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise InputError(f"cannot read audio file {path}: {e}") from None


def load(path: str | Path, target_rate: int | None = None, mono: bool = False) -> tuple[Tensor, int]:
    """Loads an audio file.

    Args:
        path: Any file soundfile reads.
        target_rate: Resample to this rate (default: keep the file's rate).
        mono: Average the channels into one.

    Returns:
        ``(wav [C, T] float32, sample_rate)``.

    Raises:
        InputError: If the file is missing, unreadable or empty.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"audio file {path} does not exist")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)  # [T, C]
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise InputError(f"cannot read audio file {path}: {e}") from None
    if data.shape[0] == 0:
        raise InputError(f"audio file {path} holds no samples")
    import torch

    wav = torch.from_numpy(data.T.copy())  # [C, T]
    if mono:
        wav = wav.mean(dim=0, keepdim=True)
    if target_rate is not None:
        wav = resample(wav, rate, target_rate)
        rate = target_rate
    return wav, rate


def save(path: str | Path, wav: Tensor, sample_rate: int, subtype: str | None = None) -> None:
    """Writes ``wav`` [C, T] to ``path`` atomically (temporary file, then rename).

    The format comes from the extension (``.wav``, ``.flac``, ``.ogg``);
    samples are clipped to [-1, 1]. On any failure no file is left behind.

    Raises:
        InputError: On an unknown extension or a tensor that is not [C, T].
    """
    path = Path(path)
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"cannot choose an audio format for {path.name}; use one of {', '.join(WRITE_FORMATS)}")
    if wav.dim() != 2:
        raise InputError(f"expected audio shaped [C, T] to save, got {tuple(wav.shape)}")
    check_write_rate(fmt[0], sample_rate, path)
    data = wav.detach().float().clamp(-1, 1).cpu().numpy().T  # [T, C]
    with atomic_path(path) as tmp:
        sf.write(tmp, data, sample_rate, format=fmt[0], subtype=subtype or fmt[1])
