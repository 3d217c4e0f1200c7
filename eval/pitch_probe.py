"""How precisely a codec's codes carry pitch: a small probe reads the fundamental from the decoded latent.

A decoder can only render the pitch its latent carries. The probe, an MLP
over four causal frames of the quantized latent (the RVQ's decoded codes at
a bitrate; ``--kbps 0`` for the unquantized latent), learns Praat's pitch
(:func:`codec.pitch.pitch_track` at each decoder frame, as
``loss.pitch`` does) as 192 classes of 25 cents on training files, and is
scored on held-out files: its median error in cents on frames both call
voiced, and the shares within 50 and 20 cents. A latent with a precise pitch
gives a small error; one whose encoder learnt to drop it (a decoder that
could not use it) a large one. For a decoder with harmonics
(``decoder_harmonics``) it also scores the decoder's own fundamental the
same way, and the share of the output spectra's energy its harmonics carry.

    codec pitch-probe --model speech-16khz --train ~/data/rvq/train.jsonl --dev ~/runs/dev13.jsonl
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from codec import sources
from codec.audio import load
from codec.errors import InputError
from codec.network.harmonic_source import PITCH_BINS, f0_of_logits
from codec.network.model import Codec
from codec.pitch import frame_pitch, pitch_loss
from codec.resolve import load_codec

#: Causal latent frames the probe sees (the frame and the three before it).
CONTEXT = 4


@dataclass(frozen=True)
class PitchProbe:
    """The probe's held-out scores (cents on frames both the probe and Praat call voiced)."""

    median_cents: float
    within_50_cents: float
    within_20_cents: float
    voicing_agreement: float
    train_frames: int
    dev_frames: int


def whole_frames(model: Codec, path: Path, max_seconds: float) -> Tensor:
    """The first ``max_seconds`` of a file, mono at the model's rate, cut to whole frames: ``[1, 1, F * hop]``."""
    wav = load(path, model.sample_rate, mono=True)[0][..., : int(max_seconds * model.sample_rate)]  # [1, T]
    return wav[..., : wav.shape[-1] // model.hop_length * model.hop_length][None]


def latent_at(model: Codec, wav: Tensor, kbps: float) -> Tensor:
    """The latent ``[B, D, F]`` the decoder sees for ``wav`` [B, 1, T] (T a multiple of the hop): the RVQ's
    decoded codes at ``kbps``, or the encoder's unquantized output for ``kbps`` 0."""
    with torch.inference_mode():
        return model.encoder(wav) if kbps == 0 else model.quantizer.decode(model.encode(wav, bandwidth_kbps=kbps).codes)


def frames(model: Codec, path: Path, kbps: float, max_seconds: float) -> tuple[Tensor, Tensor] | None:
    """Latent context rows ``[F, CONTEXT * D]`` and Praat's pitch ``[F]`` (Hz, 0 = unvoiced) of one file, or
    ``None`` for a file too short to track."""
    wav = whole_frames(model, path, max_seconds)
    if wav.shape[-1] < 0.1 * model.sample_rate:
        return None
    z = latent_at(model, wav, kbps)[0].T  # [F, D]
    rows = torch.cat([nn.functional.pad(z, (0, 0, k, 0))[: z.shape[0]] for k in range(CONTEXT)], dim=1)
    return rows, frame_pitch(wav, model.sample_rate, model.hop_length, 2 * model.hop_length)[0]


def probe(model: Codec, train_files: list[Path], dev_files: list[Path], kbps: float = 2.0, steps: int = 1500,
          seed: int = 0) -> PitchProbe:
    """Trains the probe on ``train_files`` (first 10 s of each) and scores it on ``dev_files``.

    Raises:
        InputError: No voiced frame to train or score on.
    """
    torch.manual_seed(seed)
    train = [f for f in (frames(model, p, kbps, 10.0) for p in train_files) if f is not None]
    dev = [f for f in (frames(model, p, kbps, 10.0) for p in dev_files) if f is not None]
    if not train or not dev:
        raise InputError("the pitch probe needs files of at least 0.1 s to train and to score on")
    x, y = torch.cat([r for r, _ in train]), torch.cat([f for _, f in train])
    x_dev, y_dev = torch.cat([r for r, _ in dev]), torch.cat([f for _, f in dev])
    if not (y > 0).any() or not (y_dev > 0).any():
        raise InputError("the pitch probe found no voiced frame in its training or scoring files")
    mean, std = x.mean(0), x.std(0) + 1e-5
    net = nn.Sequential(nn.Linear(x.shape[1], 256), nn.GELU(), nn.Linear(256, 256), nn.GELU(),
                        nn.Linear(256, PITCH_BINS + 1))
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(steps):
        batch = torch.randint(0, x.shape[0], (256,))
        loss = pitch_loss(net((x[batch] - mean) / std)[None], y[batch][None])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        out = net((x_dev - mean) / std)
    f0 = f0_of_logits(out[:, :-1], out[:, -1])
    both = (f0 > 0) & (y_dev > 0)
    cents = (1200 * torch.log2(f0[both] / y_dev[both])).abs()
    if not both.any():
        cents = torch.tensor([float("inf")])
    return PitchProbe(float(cents.median()), float((cents <= 50).float().mean()), float((cents <= 20).float().mean()),
                      float(((f0 > 0) == (y_dev > 0)).float().mean()), x.shape[0], x_dev.shape[0])


@dataclass(frozen=True)
class DecoderPitch:
    """A harmonic decoder's own fundamental against Praat's (cents on frames both call voiced), and the share
    of its output spectra's energy that the harmonic excitation carries."""

    median_cents: float
    within_50_cents: float
    within_20_cents: float
    voicing_agreement: float
    excitation_share: float


def decoder_pitch(model: Codec, files: list[Path], kbps: float) -> DecoderPitch:
    """How well the fundamental of a decoder with ``decoder_harmonics`` follows Praat's on ``files``.

    Raises:
        InputError: The model's decoder has no harmonics.
    """
    decoder = model.decoder
    if getattr(decoder, "excitation", None) is None:
        raise InputError("the model's decoder predicts no fundamental (it has no decoder_harmonics)")
    bins = model.config.n_fft // 2 + 1
    cents, agree, frames, harmonic, total = [], 0, 0, 0.0, 0.0
    for path in files:
        wav = whole_frames(model, path, 10.0)
        z = latent_at(model, wav, kbps)
        with torch.inference_mode():
            head = decoder.head_output(z)  # [1, F, 3K + P + 1]
            f0 = decoder.f0(head)[0]
            gain = head[..., 2 * bins : 3 * bins].clamp(max=0.0).exp()
            excitation = decoder.excitation(f0[None]) * torch.cat([gain, gain], dim=-1)
            spectrum = decoder.spectrum(z)  # the predicted part plus the excitation
        harmonic, total = harmonic + float(excitation.pow(2).sum()), total + float(spectrum.pow(2).sum())
        target = frame_pitch(wav, model.sample_rate, model.hop_length, model.config.n_fft)[0]
        both = (f0 > 0) & (target > 0)
        cents.append((1200 * torch.log2(f0[both] / target[both])).abs())
        agree, frames = agree + int(((f0 > 0) == (target > 0)).sum()), frames + f0.shape[0]
    error = torch.cat(cents) if cents else torch.tensor([])
    if not error.numel():
        error = torch.tensor([float("inf")])
    return DecoderPitch(float(error.median()), float((error <= 50).float().mean()), float((error <= 20).float().mean()),
                        agree / max(frames, 1), harmonic / max(total, 1e-12))


def compare(models: list[str], train: str, dev: str, kbps: list[float], train_files: int = 400,
            steps: int = 1500, seed: int = 0) -> int:
    """Prints one line per model and bitrate (and one for a harmonic decoder's own fundamental; with
    ``train_files`` 0, only that one); returns the exit status, 0."""
    train_list = sources.list_audio(train)
    random.Random(seed).shuffle(train_list)
    dev_list = sources.list_audio(dev)
    print(f"pitch probe: {CONTEXT} causal latent frames -> MLP -> {PITCH_BINS} classes of 25 cents; "
          f"{min(train_files, len(train_list))} training files, {len(dev_list)} held-out files")
    for spec in models:
        model = load_codec(spec).eval()
        for rate in kbps:
            where = "latent" if rate == 0 else f"{rate:g} kbps"
            if train_files:
                print(f"{spec} @ {where}: " + _line(asdict(probe(model, train_list[:train_files], dev_list, rate,
                                                                   steps, seed))))
            if getattr(model.decoder, "excitation", None) is not None:
                print(f"{spec} @ {where}, the decoder's own fundamental: "
                      + _line(asdict(decoder_pitch(model, dev_list, rate))))
    return 0


def _line(scores: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in scores.items())
