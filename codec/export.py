"""Export for deployment: TorchScript and ONNX encoder and decoder, parity with PyTorch, half precision.

Two graphs are exported, each running the offline path of the model (a
fresh, all-zero streaming state on every call)::

    encoder   audio [B, 1, T] float32  ->  codes [B, n_q, ceil(T / hop)] int64
    decoder   codes [B, n_q, F] int64  ->  audio [B, 1, F * hop] float32

``n_q`` is fixed at export time (``--kbps``). With dynamic axes (the default)
``B``, ``T`` and ``F`` may change from call to call; with a fixed length the
ONNX graphs take only the shapes of the example (TorchScript traces keep
taking any shape). Weight norm is folded into plain
weights before export. ONNX goes through the TorchScript-based exporter
(``torch.onnx.export(..., dynamo=False)``), which needs no onnxscript.

:func:`check_parity` runs the exported files (onnxruntime for ONNX) on real
audio against eager PyTorch; :func:`check_precision` runs the model in
float16 and bfloat16 against float32.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from codec import audio
from codec.atomic import atomic_write, write_json
from codec.errors import CodecError, InputError
from codec.network.model import Codec

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
#: ONNX operator set: 17 has every operator the graphs use (LSTM, ConvTranspose, ArgMin, Gather).
OPSET = 17


class ExportedEncoder(nn.Module):
    """Audio ``[B, 1, T]`` to codes ``[B, n_q, ceil(T / hop)]`` with ``n_q`` fixed.

    Args:
        model: The codec (see :func:`prepare_for_export`).
        n_q: Codebooks to output.
    """

    def __init__(self, model: Codec, n_q: int) -> None:
        super().__init__()
        self.encoder, self.quantizer = model.encoder, model.quantizer
        self.hop_length, self.n_q = model.hop_length, n_q

    def forward(self, wav: Tensor) -> Tensor:
        """``wav`` [B, 1, T] -> codes [B, n_q, F] (int64)."""
        pad = (self.hop_length - wav.shape[-1] % self.hop_length) % self.hop_length
        z = self.encoder(nn.functional.pad(wav, (0, pad)))  # [B, D, F]
        return self.quantizer.encode(z, self.n_q)


class ExportedDecoder(nn.Module):
    """Codes ``[B, n_q, F]`` to audio ``[B, 1, F * hop]``; takes exactly the ``n_q`` of the export.

    Args:
        model: The codec (see :func:`prepare_for_export`).
    """

    def __init__(self, model: Codec) -> None:
        super().__init__()
        self.decoder, self.quantizer = model.decoder, model.quantizer

    def forward(self, codes: Tensor) -> Tensor:
        """``codes`` [B, n_q, F] -> audio [B, 1, F * hop]."""
        return self.decoder(self.quantizer.decode(codes))


def prepare_for_export(model: Codec) -> Codec:
    """A copy of ``model`` in eval mode with its weights folded for inference (:meth:`Codec.fold_for_inference`).

    The copy is rebuilt from the config and the state dict rather than with
    ``copy.deepcopy``: a deep copy shares the parametrized classes with the
    original, and removing the parametrizations from it breaks the original.
    A model that is folded already gives a folded copy of itself.
    """
    copy = Codec(model.config)
    if model.is_folded:  # folded already (a model loaded for coding): fold the copy first, then take its weights
        copy.fold_for_inference().load_state_dict(model.state_dict())
        return copy.eval()
    copy.load_state_dict(model.state_dict())
    return copy.fold_for_inference().eval()


@dataclass(frozen=True)
class ExportedFiles:
    """Paths of one format's exported encoder and decoder."""

    format: str
    encoder: Path
    decoder: Path


def export(
    model: Codec,
    out_dir: str | Path,
    formats: tuple[str, ...] = FORMATS,
    bandwidth_kbps: float | None = None,
    fixed_samples: int | None = None,
) -> list[ExportedFiles]:
    """Writes ``encoder`` and ``decoder`` files in each format, and ``export.json``, to ``out_dir``.

    Args:
        model: The codec.
        out_dir: Output folder, created if needed.
        formats: Any of ``"onnx"`` and ``"torchscript"``.
        bandwidth_kbps: Bitrate choosing ``n_q`` (default: all codebooks).
        fixed_samples: Export ONNX graphs for inputs of exactly this many
            samples and batch size 1 (default: dynamic batch and length).

    Returns:
        The files written, one entry per format.

    Raises:
        InputError: On an unknown format or a fixed length under one frame.
        BandwidthError: Unsupported ``bandwidth_kbps``.
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise InputError(f"unknown export format {', '.join(unknown) or '(none)'}; choose from {', '.join(FORMATS)}")
    if fixed_samples is not None and fixed_samples < model.hop_length:
        raise InputError(f"a fixed length must be at least one frame ({model.hop_length} samples)")
    n_q = model.n_q_for_bandwidth(bandwidth_kbps)
    ready = prepare_for_export(model)
    encoder, decoder = ExportedEncoder(ready, n_q).eval(), ExportedDecoder(ready).eval()
    samples = fixed_samples or 4 * model.hop_length + model.hop_length // 2  # not whole frames: traces the padding
    wav = torch.zeros(1, model.config.channels, samples)
    codes = encoder(wav)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        files = ExportedFiles(fmt, out_dir / f"encoder{SUFFIXES[fmt]}", out_dir / f"decoder{SUFFIXES[fmt]}")
        if fmt == "onnx":
            dynamic = fixed_samples is None
            _export_onnx(encoder, wav, files.encoder, ("audio", "codes"), ("samples", "frames"), dynamic)
            _export_onnx(decoder, codes, files.decoder, ("codes", "audio"), ("frames", "samples"), dynamic)
        else:
            _export_torchscript(encoder, wav, files.encoder)
            _export_torchscript(decoder, codes, files.decoder)
        written.append(files)
    info = {
        "model_id": model.model_id,
        "model_name": model.config.name,
        "sample_rate": model.sample_rate,
        "hop_length": model.hop_length,
        "n_q": n_q,
        "codebook_size": model.config.codebook_size,
        "samples": fixed_samples,  # null: dynamic batch and length
        "encoder": {"input": "audio [B, 1, T] float32", "output": "codes [B, n_q, ceil(T / hop)] int64"},
        "decoder": {"input": "codes [B, n_q, F] int64", "output": "audio [B, 1, F * hop] float32"},
    }
    write_json(out_dir / "export.json", info)
    return written


@contextlib.contextmanager
def quiet_tracer() -> Iterator[None]:
    """Silences the tracer's warnings about shape-dependent branches and LSTM batch sizes, and the exporter's.

    The branches guard zero-length inputs, which the exported graphs do not
    take, and the LSTM starts from zero states shaped by the input's batch;
    tests run the graphs on several batch sizes and lengths.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*LSTM can cause an error when running the ONNX model.*")
        # The TorchScript-based exporter is chosen on purpose: the dynamo one needs onnxscript.
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message="The feature will be removed", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*Only steps=1 can be constant folded.*")  # a flipped kernel
        yield


def _export_onnx(
    module: nn.Module, example: Tensor, path: Path, names: tuple[str, str], time_axes: tuple[str, str], dynamic: bool
) -> None:
    """Exports ``module`` with one input and one output, both ``[B, C, time]``."""
    axes = {names[0]: {0: "batch", 2: time_axes[0]}, names[1]: {0: "batch", 2: time_axes[1]}} if dynamic else None
    with torch.no_grad(), quiet_tracer():
        atomic_write(
            path,
            lambda p: torch.onnx.export(
                module,
                (example,),
                p,
                input_names=[names[0]],
                output_names=[names[1]],
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
            ),
        )


def _export_torchscript(module: nn.Module, example: Tensor, path: Path) -> None:
    """Traces ``module`` on ``example`` and saves it."""
    with torch.no_grad(), quiet_tracer():
        traced = torch.jit.trace(module, (example,), check_trace=False)
    atomic_write(path, lambda p: torch.jit.save(traced, p))


def load_runner(path: str | Path) -> Callable[[Tensor], Tensor]:
    """A function running an exported ``.onnx`` (with onnxruntime) or ``.pt`` (TorchScript) file.

    Raises:
        InputError: If the file is missing or has another suffix.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"exported file {path} does not exist")
    if path.suffix == ".onnx":
        import onnxruntime  # the `export` extra

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: torch.from_numpy(session.run(None, {name: x.cpu().numpy()})[0])
    if path.suffix == ".pt":
        module = torch.jit.load(str(path), map_location="cpu")
        return lambda x: module(x.cpu()).detach()
    raise InputError(f"cannot run {path.name}: expected a .onnx or .pt file")


@dataclass(frozen=True)
class Parity:
    """How an exported encoder and decoder compare with eager PyTorch on one input.

    Attributes:
        format: ``"onnx"`` or ``"torchscript"``.
        codes_equal: Fraction of the exported encoder's codes equal to eager ones.
        not_near_ties: Frames whose codes differ other than by a near tie (see
            :func:`count_real_differences`); 0 for a faithful export.
        max_abs_diff: Largest absolute sample difference of the exported decoder's
            output from the eager decoder's, both fed the eager codes.
        cosine: Cosine similarity of the two decoded waveforms.
        n_codes: Codes compared (``B * n_q * F``).
    """

    format: str
    codes_equal: float
    not_near_ties: int
    max_abs_diff: float
    cosine: float
    n_codes: int

    def format_line(self) -> str:
        """One line for people."""
        return (
            f"{self.format:<12} codes identical {100 * self.codes_equal:7.3f}% of {self.n_codes} "
            f"({self.not_near_ties} differ beyond near ties)   decoder max |diff| {self.max_abs_diff:.2e}   "
            f"cosine {self.cosine:.6f}"
        )


def count_real_differences(model: Codec, wav: Tensor, codes: Tensor, other: Tensor, rel_tol: float = 1e-4) -> int:
    """Frames where ``other`` differs from the eager ``codes`` of ``wav`` other than by a near tie.

    Float rounding (another kernel, folded weight norm, another batch size)
    moves the latent by about 1e-7, which flips the nearest code wherever two
    codes are almost equally near. For each frame, take the first codebook
    ``l`` where the two differ and the eager residual ``r`` at that level: the
    choices ``a`` and ``b`` are a near tie if
    ``| ||r - e_a||^2 - ||r - e_b||^2 | <= rel_tol * (||r||^2 + ||e_a||^2 + ||e_b||^2)``.
    Later codebooks of that frame follow from the flip and are not counted.

    Args:
        model: The eager codec.
        wav: Audio ``[B, C, T]`` at the model rate.
        codes: Eager codes of ``wav``, ``[B, n_q, F]``.
        other: Codes of the same audio from another computation, same shape.
        rel_tol: Relative tolerance of a tie.

    Returns:
        The number of frames whose first difference is not a near tie.
    """
    pad = -wav.shape[-1] % model.hop_length
    with torch.no_grad():
        residual = model.encoder(nn.functional.pad(wav, (0, pad))).transpose(1, 2)  # [B, F, D]
    pending = torch.ones(codes.shape[0], codes.shape[-1], dtype=torch.bool)  # [B, F]: no difference seen yet
    real = 0
    for level in range(codes.shape[1]):
        embed = model.quantizer.levels[level].embed  # [K, D]
        a, b = codes[:, level], other[:, level]  # [B, F]
        differ = pending & (a != b)
        if differ.any():
            r, e_a, e_b = residual[differ], embed[a[differ]], embed[b[differ]]  # [N, D] each
            gap = ((r - e_a).pow(2).sum(-1) - (r - e_b).pow(2).sum(-1)).abs()
            scale = r.pow(2).sum(-1) + e_a.pow(2).sum(-1) + e_b.pow(2).sum(-1)
            real += int((gap > rel_tol * scale).sum())
        pending &= ~differ
        residual = residual - embed[a]
    return real


def check_parity(model: Codec, files: ExportedFiles, wav: Tensor, bandwidth_kbps: float | None = None) -> Parity:
    """Runs exported files on ``wav`` [B, 1, T] and compares them with eager PyTorch.

    Args:
        model: The codec that was exported.
        files: Its exported encoder and decoder.
        wav: Audio at the model rate.
        bandwidth_kbps: The bitrate of the export.

    Returns:
        A :class:`Parity`.
    """
    codes = model.encode(wav, bandwidth_kbps=bandwidth_kbps).codes  # [B, n_q, F]
    reference = model.decode(codes)  # [B, 1, F * hop]
    exported_codes = load_runner(files.encoder)(wav)
    decoded = load_runner(files.decoder)(codes)
    if exported_codes.shape != codes.shape or decoded.shape != reference.shape:
        raise CodecError(
            f"{files.format} export gives shapes {tuple(exported_codes.shape)} and {tuple(decoded.shape)}, "
            f"PyTorch {tuple(codes.shape)} and {tuple(reference.shape)}"
        )
    cosine = nn.functional.cosine_similarity(decoded.flatten().double(), reference.flatten().double(), dim=0)
    return Parity(
        format=files.format,
        codes_equal=float((exported_codes == codes).double().mean()),
        not_near_ties=count_real_differences(model, wav, codes, exported_codes),
        max_abs_diff=float((decoded - reference).abs().max()),
        cosine=float(cosine),
        n_codes=codes.numel(),
    )


@dataclass(frozen=True)
class PrecisionReport:
    """The model run in a lower precision against float32 on one input.

    Attributes:
        dtype: ``"float16"`` or ``"bfloat16"``.
        error: Why the precision could not run here, or ``None``.
        codes_equal: Fraction of codes equal to the float32 codes.
        first_codebook_equal: The same for the first codebook alone.
        decoder_snr_db: SNR of the decoder's output, fed the float32 codes,
            against the float32 decoder's.
        end_to_end_snr_db: SNR of encode-then-decode in the precision against
            encode-then-decode in float32.
        seconds: Wall time of encode and decode in the precision.
    """

    dtype: str
    error: str | None = None
    codes_equal: float = math.nan
    first_codebook_equal: float = math.nan
    decoder_snr_db: float = math.nan
    end_to_end_snr_db: float = math.nan
    seconds: float = math.nan

    @property
    def degraded(self) -> bool:
        """Whether over 1% of the codes change or the end-to-end SNR falls under 30 dB.

        Changed codes are changed tokens for a language model, even when the
        decoded audio hardly differs.
        """
        return bool(self.error) or self.codes_equal < 0.99 or self.end_to_end_snr_db < 30

    def format_line(self) -> str:
        """One line for people."""
        if self.error:
            return f"{self.dtype:<9} not available on this machine: {self.error}"
        return (
            f"{self.dtype:<9} codes identical {100 * self.codes_equal:7.3f}% (first codebook "
            f"{100 * self.first_codebook_equal:.3f}%)   decoder SNR {self.decoder_snr_db:6.2f} dB   "
            f"end-to-end SNR {self.end_to_end_snr_db:6.2f} dB   {self.seconds:.1f} s   "
            + ("degraded: keep float32" if self.degraded else "close to float32")
        )


def snr_db(reference: Tensor, estimate: Tensor) -> float:
    """``10 log10(sum reference^2 / sum (reference - estimate)^2)`` in dB (inf if equal)."""
    noise = (reference.double() - estimate.double()).pow(2).sum()
    return float(10 * torch.log10(reference.double().pow(2).sum() / noise)) if noise > 0 else math.inf


def check_precision(
    model: Codec, wav: Tensor, dtypes: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16)
) -> tuple[float, list[PrecisionReport]]:
    """Runs a copy of ``model`` cast to each of ``dtypes`` on ``wav`` [1, 1, T] and compares with float32.

    Returns:
        The float32 wall time in seconds and one :class:`PrecisionReport` per dtype.
    """
    model = model.float().eval()
    start = time.perf_counter()
    codes = model.encode(wav.float()).codes  # [1, n_q, F]
    reference = model.decode(codes)  # [1, 1, F * hop]
    float_seconds = time.perf_counter() - start
    return float_seconds, [_precision_report(model, wav, codes, reference, dtype) for dtype in dtypes]


def _precision_report(
    model: Codec, wav: Tensor, codes: Tensor, reference: Tensor, dtype: torch.dtype
) -> PrecisionReport:
    name = str(dtype).removeprefix("torch.")
    low = Codec(model.config)
    low.load_state_dict(model.state_dict())
    low = low.eval().to(dtype)
    start = time.perf_counter()
    try:
        low_codes = low.encode(wav.to(dtype)).codes
        decoded = low.decode(codes).float()
        end_to_end = low.decode(low_codes).float()
    except (RuntimeError, NotImplementedError) as e:  # an operator without a kernel for this dtype on this device
        return PrecisionReport(name, error=str(e).splitlines()[0])
    return PrecisionReport(
        dtype=name,
        codes_equal=float((low_codes == codes).double().mean()),
        first_codebook_equal=float((low_codes[:, 0] == codes[:, 0]).double().mean()),
        decoder_snr_db=snr_db(reference, decoded),
        end_to_end_snr_db=snr_db(reference, end_to_end),
        seconds=time.perf_counter() - start,
    )


def load_long_speech(paths: list[Path], sample_rate: int, seconds: float) -> Tensor:
    """Mono audio ``[1, 1, seconds * sample_rate]``: the files one after another, repeated as needed, then cut."""
    clips = [audio.load(p, target_rate=sample_rate, mono=True)[0] for p in paths]  # [1, T_i] each
    need = math.ceil(seconds * sample_rate)
    wav = torch.cat(clips * math.ceil(need / sum(c.shape[-1] for c in clips)), dim=-1)
    return wav[None, :, :need]
