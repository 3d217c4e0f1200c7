"""Pitch of speech for the harmonic decoder: Praat's track, its reading at decoder frames, and the class loss.

- :func:`pitch_track`: Praat's autocorrelation pitch track of a signal
  (Boersma, "Accurate short-term analysis of the fundamental frequency and
  the harmonics-to-noise ratio of a sampled sound", 1993), through
  ``parselmouth``, its maintained Python binding: the targets of
  ``loss.pitch`` and the ``pitch`` metric. It costs about 4 ms of one core
  per second of audio, so training tracks each batch as it comes, with no
  cache to keep in step with the crops and their gains.
- :func:`frame_pitch`: the track read at each frame of a decoder with
  harmonics. Frame ``f`` covers samples ``[f * hop, f * hop + n_fft)``; its
  target is the pitch at the frame's centre, ``f * hop + n_fft / 2``,
  interpolated (in octaves) between the analysis frames around it, or 0
  where the nearest analysis frame is unvoiced.
- :func:`pitch_loss`: what ``loss.pitch`` and ``codec pitch-probe`` minimise.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from codec.errors import CodecError, InputError
from codec.network.harmonic_source import BIN_CENTS, F0_LOWEST_HZ, bin_cents

#: Praat's pitch search range, in Hz: the usual one for the speech of adults and children.
PITCH_FLOOR_HZ, PITCH_CEILING_HZ = 60.0, 500.0
#: Praat's analysis step, in seconds.
PITCH_STEP_S = 0.01


def pitch_track(wav: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Praat's pitch track of a mono signal ``[T]``: analysis times ``[N]`` (s from the first sample) and
    pitch ``[N]`` (Hz, 0 where unvoiced); ``N`` is 0 for a signal under 3 periods of the floor (50 ms).

    Raises:
        CodecError: ``praat-parselmouth`` is not installed (it comes with the train and eval extras).
    """
    try:
        import parselmouth
    except ImportError as err:
        raise CodecError("pitch tracking needs Praat's Python binding: pip install praat-parselmouth "
                         "(part of the train and eval extras)") from err
    sound = parselmouth.Sound(np.asarray(wav, dtype=np.float64), sampling_frequency=sample_rate)
    pitch = sound.to_pitch_ac(time_step=PITCH_STEP_S, pitch_floor=PITCH_FLOOR_HZ, pitch_ceiling=PITCH_CEILING_HZ)
    return np.asarray(pitch.xs()), pitch.selected_array["frequency"]


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
        InputError: A crop shorter than Praat's analysis window (3 periods of the floor, 50 ms).
    """
    frames = wav.shape[-1] // hop_length
    if wav.shape[-1] < 3 * sample_rate / PITCH_FLOOR_HZ:
        raise InputError(f"crops of {wav.shape[-1]} samples are too short to track pitch: use at least "
                         f"{int(np.ceil(3 * sample_rate / PITCH_FLOOR_HZ))} samples (data.segment_s)")
    centres = (np.arange(frames) * hop_length + n_fft / 2) / sample_rate
    rows = [at_times(*pitch_track(item, sample_rate), centres) for item in wav[:, 0].detach().cpu().numpy()]
    return torch.tensor(np.stack(rows), dtype=torch.float32, device=wav.device)


def pitch_loss(pitch: Tensor, f0: Tensor, spread_cents: float = BIN_CENTS) -> Tensor:
    """Voicing cross-entropy plus, on voiced frames, the cross-entropy of the pitch bins against a Gaussian
    around the target (standard deviation ``spread_cents``; CREPE's soft labels).

    Args:
        pitch: A decoder's pitch-bin logits and voicing logit ``[B, F, P + 1]``
            (:meth:`codec.network.istft_decoder.ISTFTDecoder.pitch`).
        f0: Target fundamentals ``[B, F]`` in Hz, 0 where unvoiced (:func:`frame_pitch`).
        spread_cents: Width of the soft label.
    """
    pitch = pitch.float()
    voiced = f0 > 0
    loss = F.binary_cross_entropy_with_logits(pitch[..., -1], voiced.float())
    if voiced.any():
        cents = 1200 * torch.log2(f0[voiced] / F0_LOWEST_HZ)  # [V]
        labels = torch.softmax(-0.5 * ((bin_cents().to(f0.device) - cents[:, None]) / spread_cents) ** 2, dim=-1)
        loss = loss - (labels * torch.log_softmax(pitch[..., :-1][voiced], dim=-1)).sum(-1).mean()
    return loss
