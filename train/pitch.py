"""Pitch targets of training crops: Praat's autocorrelation pitch track, one value per decoder frame.

A decoder with harmonics (``model.decoder_harmonics``) predicts each frame's
fundamental, and ``loss.pitch`` trains that prediction against these targets.
Praat (:func:`codec.measures.pitch_track`) is the phoneticians' reference
tracker and costs about 4 ms of one core per second of audio, so each batch
is tracked as it comes, with no cache to keep in step with the crops and
their gains.

Frame ``f`` of the decoder covers samples ``[f * hop, f * hop + n_fft)``; its
target is the pitch at the frame's centre, ``f * hop + n_fft / 2``,
interpolated (in octaves) between the analysis frames around it, or 0 where
the nearest analysis frame is unvoiced.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from codec.measures import PITCH_FLOOR_HZ, pitch_track


def at_times(times: np.ndarray, pitch: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """The pitch track ``(times, pitch)`` read at ``centres`` [F]: 0 where the nearest analysis frame is
    unvoiced; else interpolated in octaves between the two frames around the centre when both are voiced,
    and the nearest frame's pitch when one is not (or beyond the track's ends)."""
    if len(times) < 2:
        return np.full(len(centres), pitch[0] if len(times) else 0.0)
    right = np.searchsorted(times, centres).clip(1, len(times) - 1)
    left = right - 1
    nearest = np.where(np.abs(centres - times[left]) <= np.abs(centres - times[right]), left, right)
    octaves = np.log2(np.where(pitch > 0, pitch, 1.0))
    span = times[right] - times[left]
    frac = ((centres - times[left]) / np.where(span > 0, span, 1.0)).clip(0.0, 1.0)
    between = np.exp2(octaves[left] + frac * (octaves[right] - octaves[left]))
    value = np.where((pitch[left] > 0) & (pitch[right] > 0), between, pitch[nearest])
    return np.where(pitch[nearest] > 0, value, 0.0)


def frame_pitch(wav: Tensor, sample_rate: int, hop_length: int, n_fft: int) -> Tensor:
    """Target fundamentals ``[B, F]`` (Hz, 0 = unvoiced) of crops ``wav`` [B, 1, T], ``F = T // hop``.

    Raises:
        ValueError: A crop shorter than Praat's analysis window (3 periods of the floor, 50 ms).
    """
    frames = wav.shape[-1] // hop_length
    if wav.shape[-1] < 3 * sample_rate / PITCH_FLOOR_HZ:
        raise ValueError(f"crops of {wav.shape[-1]} samples are too short to track pitch: use at least "
                         f"{int(np.ceil(3 * sample_rate / PITCH_FLOOR_HZ))} samples (data.segment_s)")
    centres = (np.arange(frames) * hop_length + n_fft / 2) / sample_rate
    rows = [at_times(*pitch_track(item, sample_rate), centres) for item in wav[:, 0].detach().cpu().numpy()]
    return torch.tensor(np.stack(rows), dtype=torch.float32, device=wav.device)
