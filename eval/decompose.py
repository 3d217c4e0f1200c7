"""What holds a model's decoded speech down: its magnitudes, its phases, or its pitch.

Each clip is decoded at each bitrate, and PESQ-WB and ViSQOL (speech mode)
score four versions of it against the clip:

- ``decoded``: the decoder's output (the whole clip in one pass, as
  training decodes; ``codec eval``'s scores of the bundled model on the
  13 clips of docs/recipes.md are within 0.02 of this);
- ``decoded magnitudes``: the output's STFT magnitudes with the clip's own
  phases (what the decoder's magnitudes are worth with perfect phases);
- ``decoded phases``: the clip's magnitudes with the output's phases (what
  its phases are worth with perfect magnitudes);
- ``Praat's pitch`` (a decoder with ``decoder_harmonics`` only): the decoder
  driven by Praat's pitch track of the clip instead of its own fundamental,
  as ``loss.pitch_forcing`` trains it.

The STFT is Hann-windowed, ``n_fft`` long with a hop of a quarter, so the
clip itself comes back through it almost exactly (PESQ above 4.5). A version
that scores far above ``decoded`` points at the part the decoder gets wrong.

    codec decompose --model speech-16khz --data ~/runs/dev13.jsonl --kbps 2,0
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from codec import sources
from codec.network.model import Codec
from codec.pitch import frame_pitch
from codec.resolve import load_codec
from eval import metrics
from eval.pitch_probe import latent_at, whole_frames

VERSIONS = ("decoded", "decoded magnitudes", "decoded phases", "Praat's pitch")


def swap(magnitude_of: np.ndarray, phase_of: np.ndarray, n_fft: int = 512) -> np.ndarray:
    """Audio with the STFT magnitudes of ``magnitude_of`` and the phases of ``phase_of`` (both ``[T]``)."""
    window, hop = torch.hann_window(n_fft, dtype=torch.float64), n_fft // 4
    spectra = [torch.stft(torch.from_numpy(np.asarray(x, np.float64)), n_fft, hop, window=window, return_complex=True)
               for x in (magnitude_of, phase_of)]
    combined = spectra[0].abs() * torch.exp(1j * spectra[1].angle())
    return torch.istft(combined, n_fft, hop, window=window, length=len(magnitude_of)).numpy()


def decode(model: Codec, wav: Tensor, kbps: float, f0: Tensor | None = None) -> np.ndarray:
    """``wav`` [1, 1, T] (T a multiple of the hop) through the model at ``kbps`` (0: the unquantized latent),
    driven by the fundamental ``f0`` [1, F] (Hz) instead of the decoder's own if given; ``[T]``."""
    z = latent_at(model, wav, kbps)
    with torch.inference_mode():
        out = model.decoder(z) if f0 is None else model.decoder.render(model.decoder.head_output(z), f0)
    return out[0, 0].numpy()


def scores(model: Codec, clips: list[Tensor], kbps: float, n_fft: int = 512) -> dict[str, tuple[float, float]]:
    """Mean PESQ and ViSQOL of each version (:data:`VERSIONS`) of ``clips`` (each ``[1, 1, T]``) at ``kbps``."""
    harmonic = getattr(model.decoder, "excitation", None) is not None
    rate, rows = model.sample_rate, {}
    for wav in clips:
        ref, out = wav[0, 0].numpy(), decode(model, wav, kbps)
        versions = {"decoded": out, "decoded magnitudes": swap(out, ref, n_fft), "decoded phases": swap(ref, out, n_fft)}
        if harmonic:
            f0 = frame_pitch(wav, rate, model.hop_length, model.config.n_fft)
            versions["Praat's pitch"] = decode(model, wav, kbps, f0)
        for name, deg in versions.items():
            rows.setdefault(name, []).append((metrics.pesq_wb(ref, deg, rate), metrics.visqol_speech(ref, deg, rate)))
    return {name: (float(np.mean([p for p, _ in v])), float(np.mean([q for _, q in v]))) for name, v in rows.items()}


def compare(models: list[str], data: str, kbps: list[float], limit: int = 13, seconds: float = 10.0,
            n_fft: int = 512) -> int:
    """Prints a table of PESQ / ViSQOL per model, bitrate and version; returns the exit status, 0.

    Args:
        models: Saved model directories or bundled names.
        data: A folder or JSONL manifest of speech clips; the first ``limit`` are used.
        kbps: Bitrates; 0 for the unquantized latent.
        limit: Clips to use.
        seconds: Seconds from each clip's start.
        n_fft: The STFT that swaps magnitudes and phases.
    """
    files = sources.list_audio(data)[:limit]
    print(f"{len(files)} clips of up to {seconds:g} s; PESQ-WB / ViSQOL (speech, lattice); "
          f"magnitudes and phases swapped through a {n_fft}-point Hann STFT, hop {n_fft // 4}")
    print("| model | kbps | " + " | ".join(VERSIONS) + " |\n|---|---|" + "---|" * len(VERSIONS))
    for spec in models:
        model = load_codec(spec).eval()
        clips = [whole_frames(model, path, seconds) for path in files]
        for rate in kbps:
            row = scores(model, clips, rate, n_fft)
            cells = [f"{row[v][0]:.2f} / {row[v][1]:.2f}" if v in row else "-" for v in VERSIONS]
            print(f"| {spec} | {'latent' if rate == 0 else f'{rate:g}'} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":  # python -m eval.decompose: the same as `codec decompose`
    from codec.cli import run_module

    run_module("decompose")
