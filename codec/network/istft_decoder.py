"""Frame-rate decoder with an inverse-STFT head (the ``"istft"`` decoder of :class:`~codec.network.config.CodecConfig`).

The SEANet decoder upsamples the 50 Hz latent to audio through four transposed
convolutions; this one stays at the frame rate and predicts each frame's
spectrum instead, as Vocos does (arXiv 2306.00814)::

    z_hat [B, D, F] -> causal conv k7 -> W
      -> N x causal ConvNeXt block (depthwise conv k7, LayerNorm, W -> 3W -> W MLP, layer scale)
      -> LayerNorm -> Linear W -> 2K        (K = n_fft / 2 + 1 bins)
      -> log-magnitude m and phase p per bin: X = min(exp(m), MAX_MAGNITUDE) * (cos p + j sin p)
         (with ``decoder_phase: integrated`` the head gives each bin's phase advance beyond its nominal
         2 pi k hop / n_fft, and p is the running sum over frames: :class:`PhaseIntegrator`;
         with ``recovered`` the head gives log-magnitudes only, of ``decoder_subframes`` Hann-windowed
         frames per code frame, and the phases follow from them: :mod:`codec.network.phase_recovery`)
      -> with ``decoder_harmonics``, plus exact harmonics of a predicted fundamental, scaled per bin by a
         predicted gain: :mod:`codec.network.harmonic_source`
      -> inverse DFT of each frame, times a sqrt-Hann window (a Hann one with recovered phases)
      -> overlap-add -> wav [B, 1, F * hop]

Causality. Frame ``f``'s windowed frame covers output samples
``[f * hop, f * hop + n_fft)``, so output block ``f`` (samples
``[f * hop, (f + 1) * hop)``) is the sum of frames ``f - r + 1 .. f`` with
``r = n_fft / hop``: every sample is final once its own frame is in, exactly
as with a transposed convolution of kernel ``n_fft`` and stride ``hop``. The
decoder adds no algorithmic latency; the price is that each frame also
renders the next ``r - 1`` blocks (its window's decaying tail), which later
frames then blend in. The streaming state is that pending tail,
``[B, n_fft - hop]``, and the ConvNeXt convolutions' last ``k - 1`` frames.

The inverse DFT is a matrix product with a fixed basis (window and overlap-add
normalisation folded in) rather than ``torch.istft``: ``istft`` centres its
frames (a look-ahead of half a window) and normalises by the envelope of the
frames it was given, so a chunked call would not equal a whole one, and a
basis product exports to ONNX and TorchScript as plain matrix algebra. With
``n_fft = 2 * hop`` (640 samples at 16 kHz, 25 Hz per bin) the basis costs
about 0.4 M multiply-adds per frame, a small part of the backbone's cost.

Inference (no autograd, no tracing) runs time-major, ``[B, F, C]``
(:meth:`ISTFTDecoder.time_major_head`): the depthwise convolutions as
one product over each window, the MLPs as two matrix products with weights
transposed and scaled by ``gamma`` once per stream (:class:`BlockWeights`), or
read in place once :meth:`ConvNeXtBlock.fold_for_inference` has laid them out
so (``codec compress`` and ``decompress`` fold every model they load).
A streamed frame then costs about 7.4 M multiply-adds, and reading the 30 MB
of float32 weights they touch is most of its time on a CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from codec.network.config import CodecConfig
from codec.network.harmonic_source import PITCH_BINS, HarmonicSource, f0_of_logits
from codec.network.layers import StreamingConv1d, eager_inference
from codec.network.phase_recovery import PhaseRecovery
from codec.network.streaming import StreamingModule, kept

#: Largest magnitude a bin may take. A full-scale sine gives about ``0.32 * n_fft`` in its bin
#: through a sqrt-Hann window, so this leaves room for n_fft up to 2048 and stops ``exp`` overflowing.
MAX_MAGNITUDE = 1e3
#: Initial log-gain of every bin of the harmonic excitation (``decoder_harmonics``): a unit harmonic then
#: adds about 0.5 to its bin, a small part of a voiced frame, so a fine-tune starts near its saved model.
HARMONIC_GAIN_INIT = -6.0


def analysis_window(n_fft: int, window: str = "sqrt_hann") -> Tensor:
    """Periodic analysis window ``[n_fft]`` (float64): ``"sqrt_hann"`` or ``"hann"``."""
    hann = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
    return hann.sqrt() if window == "sqrt_hann" else hann


def window_overlap(n_fft: int, hop_length: int, window: str = "sqrt_hann") -> float:
    """Sum over overlapping frames of the squared analysis window: ``r / 2`` (sqrt-Hann) or ``3 r / 8``
    (Hann, ``r >= 3``) at ``r = n_fft / hop``."""
    overlap = n_fft / hop_length
    return overlap / 2 if window == "sqrt_hann" else 3 * overlap / 8


def synthesis_basis(n_fft: int, hop_length: int, window: str = "sqrt_hann") -> tuple[Tensor, Tensor]:
    """Real and imaginary inverse-DFT bases ``[K, n_fft]`` (K = n_fft / 2 + 1), windowed and normalised.

    ``re @ real + im @ imag`` is the windowed inverse real DFT of one frame,
    scaled so that frames analysed with :func:`analysis_window` ``window`` at
    ``hop_length`` overlap-add back to the analysed signal (the synthesis
    window is the analysis window over the sum of its overlapping squares).
    """
    bins = n_fft // 2 + 1
    k = torch.arange(bins, dtype=torch.float64)[:, None]
    n = torch.arange(n_fft, dtype=torch.float64)[None]
    angle = 2 * math.pi * k * n / n_fft  # [K, n_fft]
    weight = torch.full((bins, 1), 2.0, dtype=torch.float64)
    weight[0] = weight[-1] = 1.0  # DC and Nyquist appear once in the spectrum, every other bin twice
    scale = weight * analysis_window(n_fft, window)[None] / (n_fft * window_overlap(n_fft, hop_length, window))
    return (scale * torch.cos(angle)).float(), (-scale * torch.sin(angle)).float()


def analysis_frames(wav: Tensor, n_fft: int, hop_length: int, window: str = "sqrt_hann") -> Tensor:
    """Complex spectra ``[B, F, K]`` of ``wav`` [B, T] framed as the decoder places its frames.

    Frame ``f`` is ``wav[f * hop : f * hop + n_fft]`` (zeros past the end)
    times the :func:`analysis_window`, so :class:`OverlapAdd` of these spectra
    returns ``wav`` from sample ``n_fft - hop`` on. The targets of
    ``loss.magnitude``, and for tests and analysis.
    """
    frames_count = wav.shape[-1] // hop_length
    padded = nn.functional.pad(wav, (0, n_fft))
    frames = padded.unfold(-1, n_fft, hop_length)[:, :frames_count]  # [B, F, n_fft]
    return torch.fft.rfft(frames * analysis_window(n_fft, window).to(wav.dtype), dim=-1)


@dataclass
class OverlapState:
    """Samples of earlier frames that fall after the last emitted block, ``[B, n_fft - hop]``."""

    tail: Tensor


class OverlapAdd(StreamingModule[OverlapState]):
    """Inverse DFT of each frame's spectrum and causal overlap-add: ``[B, F, K]`` pairs to ``[B, 1, F * hop]``.

    Args:
        n_fft: Frame length; a multiple of ``hop_length``.
        hop_length: Samples between frames.
        window: The analysis window the spectra stand for (:func:`analysis_window`).
    """

    carried = ("tail",)

    def __init__(self, n_fft: int, hop_length: int, window: str = "sqrt_hann") -> None:
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        real, imag = synthesis_basis(n_fft, hop_length, window)
        self.register_buffer("basis", torch.cat([real, imag]), persistent=False)  # [2K, n_fft]

    def init_state(self, x: Tensor) -> OverlapState:
        return OverlapState(x.new_zeros(x.shape[0], self.n_fft - self.hop_length))

    def forward(self, spectrum: Tensor) -> Tensor:
        """``spectrum`` [B, F, 2K] (real parts, then imaginary parts) -> audio [B, 1, F * hop]."""
        batch, frames, _ = spectrum.shape
        hop, overlap = self.hop_length, self.n_fft // self.hop_length
        state = self.get_state(spectrum)
        if frames == 1 and self.is_streaming:
            return self._one_frame(spectrum, state)
        pieces = (spectrum @ self.basis).view(batch, frames, overlap, hop)  # [B, F, r, hop]
        # Block t receives piece j of frame t - j; the state holds what earlier calls left for blocks to come.
        out = pieces.new_zeros(batch, frames + overlap - 1, hop)  # [B, F + r - 1, hop]
        for j in range(overlap):
            out[:, j : j + frames] += pieces[:, :, j]
        out = out.view(batch, -1)  # [B, (F + r - 1) * hop]
        pending = state.tail.shape[-1]
        out[:, :pending] += state.tail
        self.set_state(OverlapState(kept(out[:, frames * hop :], out)))
        return out[:, None, : frames * hop]

    def _one_frame(self, spectrum: Tensor, state: OverlapState) -> Tensor:
        """One streamed frame ``[B, 1, 2K]``: its first block plus the pending tail, the rest becomes the tail.

        The same sums as :meth:`forward` (a block is its own piece plus what earlier frames left), in a few ops.
        """
        hop = self.hop_length
        frame = torch.mm(spectrum[:, 0], self.basis)  # [B, n_fft]
        out = frame[:, :hop] + state.tail[:, :hop]  # [B, hop]
        tail = frame[:, hop:]  # [B, n_fft - hop]
        if tail.shape[-1] > hop:  # frames further back still overlap the blocks after this one
            tail[:, : -hop] += state.tail[:, hop:]
        state.tail = tail
        return out[:, None]


@dataclass
class PhaseState:
    """Each bin's phase at the last frame, ``[B, K]`` (float64, in ``[-pi, pi)``)."""

    phase: Tensor


class PhaseIntegrator(StreamingModule[PhaseState]):
    """Running sum of predicted phase advances: ``[B, F, K]`` advances to ``[B, F, K]`` phases.

    Frame ``f``'s phase in bin ``k`` is frame ``f - 1``'s plus the bin's
    nominal advance ``2 pi k hop / n_fft`` plus the predicted deviation. The
    sum runs in float64 and is wrapped to ``[-pi, pi)``, so a stream of any
    length keeps full precision and chunked sums equal the whole one to
    rounding; the state is the last frame's phases.

    Args:
        n_fft: Frame length.
        hop_length: Samples between frames.
    """

    carried = ("phase",)

    def __init__(self, n_fft: int, hop_length: int) -> None:
        super().__init__()
        nominal = 2 * math.pi * hop_length / n_fft * torch.arange(n_fft // 2 + 1, dtype=torch.float64)
        self.register_buffer("nominal", torch.remainder(nominal, 2 * math.pi), persistent=False)  # [K]

    def init_state(self, x: Tensor) -> PhaseState:
        return PhaseState(x.new_zeros(x.shape[0], self.nominal.shape[0], dtype=torch.float64))

    def forward(self, deviation: Tensor) -> Tensor:
        """Phases ``[B, F, K]`` (the input's dtype) of the deviations ``[B, F, K]``."""
        state = self.get_state(deviation)
        advance = deviation.to(torch.float64) + self.nominal
        phase = torch.cumsum(advance, dim=1) + state.phase[:, None]  # [B, F, K]
        phase = torch.remainder(phase + math.pi, 2 * math.pi) - math.pi
        self.set_state(PhaseState(kept(phase[:, -1], phase)))
        return phase.to(deviation.dtype)


@dataclass
class BlockWeights:
    """A ConvNeXt block's MLP as time-major inference multiplies it, built once per stream.

    ``up`` [C, 3C] and ``down`` [3C, C] are the linear layers' weights
    transposed (a one-row product runs about twice as fast on the
    ``[in, out]`` layout), ``down`` and ``down_bias`` [C] scaled by ``gamma``.
    """

    up: Tensor
    up_bias: Tensor
    down: Tensor
    down_bias: Tensor


class ConvNeXtBlock(StreamingModule[BlockWeights]):
    """Causal ConvNeXt block at the frame rate: ``x + gamma * MLP(LayerNorm(depthwise_conv(x)))``.

    Its streaming state holds no signal, only the inference weights
    (:class:`BlockWeights`); the depthwise convolution keeps its own past.

    Args:
        dim: Channels in and out.
        kernel_size: Kernel of the causal depthwise convolution.
        layer_scale: Initial value of the per-channel output scale ``gamma``.
    """

    def __init__(self, dim: int, kernel_size: int, layer_scale: float) -> None:
        super().__init__()
        self.dwconv = StreamingConv1d(dim, dim, kernel_size, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 3 * dim), nn.GELU(), nn.Linear(3 * dim, dim))
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))
        self.folded = False  # set by fold_for_inference

    def init_state(self, x: Tensor) -> BlockWeights:
        up, down = self.mlp[0], self.mlp[2]
        if self.folded:  # the layouts and the scale are already those of inference: views, no copies
            return BlockWeights(up.weight.t(), up.bias, down.weight.t(), down.bias)
        return BlockWeights(up.weight.t().contiguous(), up.bias, (down.weight * self.gamma[:, None]).t().contiguous(),
                            down.bias * self.gamma)

    @torch.no_grad()
    def fold_for_inference(self) -> None:
        """Scales the MLP's output layer by ``gamma`` (then 1) and stores both weights ``[in, out]``, in place.

        The linear layers keep their ``[out, in]`` shapes as strided views, so
        every path gives the same outputs (to rounding), and each stream's
        :class:`BlockWeights` are views instead of a transposed copy of the
        MLP (28 MB for width 384 and 8 blocks).
        """
        up, down = self.mlp[0], self.mlp[2]
        up.weight = nn.Parameter(up.weight.t().contiguous().t(), requires_grad=False)
        down.weight = nn.Parameter((down.weight * self.gamma[:, None]).t().contiguous().t(), requires_grad=False)
        down.bias.mul_(self.gamma)
        self.gamma.fill_(1.0)
        self.folded = True

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, F] -> [B, C, F]."""
        y = self.dwconv(x).transpose(1, 2)  # [B, F, C]
        y = self.mlp(self.norm(y)) * self.gamma
        return x + y.transpose(1, 2)

    def time_major(self, x: Tensor) -> Tensor:
        """Inference in time-major layout, the layers called as functions: [B, F, C] -> [B, F, C]."""
        weights, norm = self.get_state(x), self.norm
        y = nn.functional.layer_norm(self.dwconv.time_major(x), norm.normalized_shape, norm.weight, norm.bias, norm.eps)
        hidden = torch.addmm(weights.up_bias, y.view(-1, y.shape[-1]), weights.up)  # [B * F, 3C]
        hidden = nn.functional.gelu(hidden, approximate=self.mlp[1].approximate)
        return torch.addmm(weights.down_bias, hidden, weights.down).view_as(x).add_(x)


class ISTFTDecoder(nn.Module):
    """Latent ``[B, dimension, F]`` to waveform ``[B, 1, F * hop]`` through predicted spectra.

    The head predicts ``R = decoder_subframes`` frames per code frame, at a hop
    of ``hop / R``. With ``decoder_phase: recovered`` it predicts only their
    log-magnitudes (of Hann-windowed frames) and :class:`PhaseRecovery` derives
    the phases from them.

    Args:
        config: ``decoder_dim`` (width W), ``decoder_layers`` (ConvNeXt
            blocks), ``n_fft`` (frame length, a multiple of the hop),
            ``decoder_phase``, ``decoder_subframes`` and ``kernel_size`` (of the
            input and depthwise convolutions) are read.
    """

    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        width, bins = config.decoder_dim, config.n_fft // 2 + 1
        self.subframes, self.recovers_phase = config.decoder_subframes, config.decoder_phase == "recovered"
        hop = config.hop_length // self.subframes
        self.input = StreamingConv1d(config.dimension, width, config.kernel_size)
        self.blocks = nn.Sequential(
            *(ConvNeXtBlock(width, config.kernel_size, 1.0 / config.decoder_layers) for _ in range(config.decoder_layers))
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, self.subframes * bins * (1 if self.recovers_phase else 2))
        self.phase = PhaseIntegrator(config.n_fft, hop) if config.decoder_phase == "integrated" else None
        self.recovery = PhaseRecovery(config.n_fft, hop) if self.recovers_phase else None
        self.synthesis = OverlapAdd(config.n_fft, hop, "hann" if self.recovers_phase else "sqrt_hann")
        self.source_head, self.excitation = None, None
        if config.decoder_harmonics:  # per bin, the harmonics' log-gain; then pitch-bin logits and a voicing logit
            self.source_head = nn.Linear(width, bins + PITCH_BINS + 1)
            nn.init.zeros_(self.source_head.weight[:bins])
            nn.init.constant_(self.source_head.bias[:bins], HARMONIC_GAIN_INIT)
            nn.init.zeros_(self.source_head.bias[bins:])
            self.excitation = HarmonicSource(config.n_fft, hop, config.sample_rate)

    def head_output(self, z: Tensor) -> Tensor:
        """The head's output for ``z`` [B, D, F], one row per predicted frame: [B, F * R, K or 2K]
        (log-magnitudes, then phases or phase advances unless the phase is recovered; with harmonics,
        then the harmonics' log-gains, pitch-bin logits and a voicing logit: 3K + PITCH_BINS + 1)."""
        if eager_inference(z, self):
            return self._frames(self.time_major_head(z.transpose(1, 2)))
        h = self.norm(self.blocks(self.input(z)).transpose(1, 2))  # [B, F, W]
        if self.source_head is not None:
            return torch.cat([self.head(h), self.source_head(h)], dim=-1)
        return self._frames(self.head(h))

    def time_major_head(self, z: Tensor) -> Tensor:
        """The head's output for inference, of ``z`` [B, F, D] in time-major layout: [B, F, R * (K or 2K)].

        Every layer runs on ``[B, F, C]`` rows (no transposes, no module
        calls), the convolutions as :meth:`StreamingConv1d.time_major`
        products on the same streaming state.
        """
        h = self.input.time_major(z)  # [B, F, W]
        for block in self.blocks:
            h = block.time_major(h)
        h = nn.functional.layer_norm(h, self.norm.normalized_shape, self.norm.weight, self.norm.bias, self.norm.eps)
        out = nn.functional.linear(h, self.head.weight, self.head.bias)
        if self.source_head is not None:
            return torch.cat([out, nn.functional.linear(h, self.source_head.weight, self.source_head.bias)], dim=-1)
        return out

    def spectrum(self, z: Tensor) -> Tensor:
        """Predicted complex spectra of ``z`` [B, D, F], as [B, F * R, 2K] (real parts, then imaginary parts)."""
        return self._complex_spectrum(self.head_output(z))

    def forward(self, z: Tensor) -> Tensor:
        """``z`` [B, D, F] -> audio [B, 1, F * hop]."""
        return self.synthesis(self.spectrum(z))

    def render(self, head: Tensor, f0: Tensor | None = None) -> Tensor:
        """Audio ``[B, 1, F * hop]`` of the head's output ``head`` [B, F * R, K or 2K] (:meth:`head_output`);
        with harmonics, ``f0`` [B, F] (Hz, 0 = unvoiced) replaces the predicted fundamental (teacher forcing)."""
        return self.synthesis(self._complex_spectrum(head, f0))

    def pitch(self, head: Tensor) -> Tensor:
        """The predicted pitch-bin logits and voicing logit of each frame, ``[B, F, PITCH_BINS + 1]``, of the
        head's output ``head`` [B, F, 3K + PITCH_BINS + 1] of a decoder with harmonics
        (:mod:`codec.network.harmonic_source`)."""
        return head[..., -(PITCH_BINS + 1) :]

    def f0(self, head: Tensor) -> Tensor:
        """The predicted fundamental ``[B, F]`` in Hz (0 where the voicing logit is negative)."""
        pitch = self.pitch(head)
        return f0_of_logits(pitch[..., :-1], pitch[..., -1])

    def _frames(self, head: Tensor) -> Tensor:
        """``[B, F, R * C]`` head rows to one row per predicted frame, ``[B, F * R, C]``."""
        batch, frames, width = head.shape
        return head.reshape(batch, frames * self.subframes, width // self.subframes)

    def _complex_spectrum(self, head: Tensor, f0: Tensor | None = None) -> Tensor:
        """Real and imaginary parts ``[B, S, 2K]`` of the head's rows ``[B, S, K or 2K]``: log-magnitudes,
        then phases (phase advances, summed here, with ``decoder_phase: integrated``; with ``recovered``,
        the phases come from the log-magnitudes). With harmonics (rows ``[B, S, 3K + PITCH_BINS + 1]``) the excitation
        of the fundamental ``f0`` (the predicted one if ``None``), scaled per bin by ``exp`` of the
        predicted log-gains, is added."""
        if self.recovery is not None:
            return _polar(head, self.recovery(head))
        bins = self.synthesis.n_fft // 2 + 1
        log_magnitude, phase = head[..., :bins], head[..., bins : 2 * bins]  # [B, S, K] each
        spectrum = _polar(log_magnitude, phase if self.phase is None else self.phase(phase))
        if self.excitation is None:
            return spectrum
        gain = head[..., 2 * bins : 3 * bins].clamp(max=0.0).exp()  # [B, S, K], at most 1 per unit harmonic
        excitation = self.excitation(self.f0(head) if f0 is None else f0)  # [B, S, 2K]: real, then imaginary parts
        scaled = excitation.unflatten(-1, (2, bins)) * gain.unsqueeze(-2)  # both parts by the same gain, no copy
        return spectrum + scaled.flatten(-2)


def _polar(log_magnitude: Tensor, phase: Tensor) -> Tensor:
    """Real and imaginary parts ``[B, F, 2K]`` of log-magnitudes and phases ``[B, F, K]``."""
    magnitude = log_magnitude.clamp(max=math.log(MAX_MAGNITUDE)).exp()
    return torch.cat([magnitude * torch.cos(phase), magnitude * torch.sin(phase)], dim=-1)
