"""One streamed frame, encode + decode, as an exported function of explicit state; and a decoding chunk.

Streaming in PyTorch (:meth:`Codec.streaming`) keeps each layer's past inside
the layer and runs a few hundred small operations per 20 ms frame, each with
Python's and the dispatcher's overhead. For real-time use the same frame is
traced once into a graph whose inputs are the frame and the past of every
causal layer (the fields each :class:`~codec.network.streaming.StreamingModule`
names in ``carried``), and whose outputs are the frame's codes, its decoded
audio and the updated past:

    (frame [1, C, hop], past...) -> (codes [1, n_q, 1], audio [1, C, hop], past...)

:func:`export_step` writes that graph as ONNX (run by onnxruntime) or
TorchScript, with the weight norm folded, and :class:`StepRunner` runs it
frame by frame, holding the past between calls. Fed frame by frame, it gives
the codes and audio of offline :meth:`Codec.encode` and :meth:`Codec.decode`
up to float rounding (:func:`check_step_parity` counts the differences).
The same machinery (:class:`ExplicitPast`) exports :class:`DecoderChunk`,
the decoder alone on a fixed number of frames, which decompression runs on
onnxruntime (:mod:`codec.fileformat.onnx_decode`).

onnxruntime runs with subnormal floats flushed to zero
(``session.set_denormal_as_zero``): the decaying tails of the LSTM and of the
convolutions' past reach the subnormal range (below 1.2e-38), where each
multiply costs tens of cycles; flushing changes no code and moves the audio
by far less than the float32 rounding of the graph itself. The flag is
processor state of the calling thread: the runner sets it for each frame
and clears it again afterwards (and after creating the session), unless the
caller had set it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from codec.atomic import atomic_write
from codec.errors import CodecError, InputError
from codec.export import OPSET, Parity, count_real_differences, prepare_for_export, quiet_tracer
from codec.network.model import Codec
from codec.network.streaming import StreamingModule, streaming_modules

STEP_FORMATS = {".onnx": "onnx", ".pt": "torchscript"}
SHAPES_FILE = "step_inputs.json"  # input shapes and types, stored beside a TorchScript step
_SUBNORMAL = np.float32(1e-39)  # below float32's smallest normal number, 1.2e-38


class ExplicitPast(nn.Module):
    """Runs streaming layers with their past passed in and handed back as plain tensors; made to be traced.

    Args:
        layers: The streaming layers whose past the traced function takes and returns.
    """

    def __init__(self, layers: list[StreamingModule]) -> None:
        super().__init__()
        self.layers = layers
        probe = torch.zeros(1, 1, 1)
        #: (layer index, field, zeros) of each past tensor; empty ones (a pointwise layer's) are left out.
        self.slots: list[tuple[int, str, Tensor]] = []
        for index, layer in enumerate(self.layers):
            state = layer.init_state(probe)
            for field in layer.carried:
                if getattr(state, field).numel():
                    self.slots.append((index, field, torch.zeros_like(getattr(state, field))))

    def initial_state(self) -> list[Tensor]:
        """The past before the first frame: zeros, one tensor per slot."""
        return [zeros.clone() for _, _, zeros in self.slots]

    def with_past(self, x: Tensor, past: tuple[Tensor, ...], run: Callable[[], tuple[Tensor, ...]]) -> tuple[Tensor, ...]:
        """``run()``'s outputs followed by the new past, with every layer streaming from ``past`` (batch of ``x``)."""
        if not torch.jit.is_tracing():
            raise CodecError(f"{type(self).__name__} only runs while traced; in PyTorch, use Codec.streaming()")
        by_layer: dict[int, list[tuple[str, Tensor]]] = {}
        for (index, field, _), tensor in zip(self.slots, past, strict=True):
            by_layer.setdefault(index, []).append((field, tensor))
        for index, layer in enumerate(self.layers):
            layer._streaming, layer._batch_size, layer._state = True, 1, None
            if index in by_layer:
                state = layer.init_state(x)
                for field, tensor in by_layer[index]:
                    setattr(state, field, tensor)
                layer._state = state
        try:
            outputs = run()
            new_past = [getattr(self.layers[index]._state, field) for index, field, _ in self.slots]
        finally:
            for layer in self.layers:
                layer._streaming, layer._batch_size, layer._state = False, 0, None
        return (*outputs, *new_past)

    def export_onnx(self, x: Tensor, path: Path, names: tuple[str, ...]) -> None:
        """Traces the module on ``x`` and the initial past and writes it to ``path`` as ONNX (atomically).

        ``names`` are the first input's and then the outputs before the past;
        the past goes in as ``past_i`` and comes out as ``next_past_i``.
        """
        past = self.initial_state()
        past_names = [f"past_{i}" for i in range(len(past))]
        outputs = [*names[1:], *(f"next_{n}" for n in past_names)]
        with torch.no_grad(), quiet_tracer():
            atomic_write(path, lambda p: torch.onnx.export(
                self, (x, *past), p, input_names=[names[0], *past_names], output_names=outputs,
                opset_version=OPSET, dynamo=False,
            ))


class FrameStep(ExplicitPast):
    """Encode + decode of one frame with every causal layer's past as explicit tensors; made to be traced.

    Args:
        model: The codec, prepared by :func:`~codec.export.prepare_for_export`.
        n_q: Codebooks per frame.
    """

    def __init__(self, model: Codec, n_q: int) -> None:
        super().__init__(list(streaming_modules(model)))
        self.model, self.n_q = model, n_q

    def forward(self, frame: Tensor, *past: Tensor) -> tuple[Tensor, ...]:
        """``frame`` [1, C, hop] and the past -> codes [1, n_q, 1], audio [1, C, hop] and the new past."""

        def run() -> tuple[Tensor, Tensor]:
            codes, latent = self.model.quantizer.encode_decode(self.model.encoder(frame), self.n_q)  # [1, n_q, 1]
            return codes, self.model.decoder(latent)  # audio [1, C, hop]

        return self.with_past(frame, past, run)


class DecoderChunk(ExplicitPast):
    """Decoding of a fixed number of frames of one channel, with the decoder's past as explicit tensors.

        (codes [1, n_q, frames] int64, past...) -> (audio [1, C, frames * hop], past...)

    The graph :mod:`codec.fileformat.onnx_decode` runs to decompress files
    without PyTorch; the quantizer's decoding is a lookup with no past.

    Args:
        model: The codec, prepared by :func:`~codec.export.prepare_for_export`.
    """

    def __init__(self, model: Codec) -> None:
        super().__init__(list(streaming_modules(model.decoder)))
        self.model = model

    def forward(self, codes: Tensor, *past: Tensor) -> tuple[Tensor, ...]:
        """``codes`` [1, n_q, frames] and the past -> audio [1, C, frames * hop] and the new past."""
        return self.with_past(codes.float(), past, lambda: (self.model.decoder(self.model.quantizer.decode(codes)),))


def export_decoder_chunk(model: Codec, path: str | Path, n_q: int, frames: int) -> Path:
    """Writes the :class:`DecoderChunk` of ``model`` for ``n_q`` codebooks and ``frames`` frames to ``path`` (ONNX).

    Args:
        model: The codec (left untouched: a copy is prepared).
        path: Output ``.onnx`` file, written atomically.
        n_q: Codebooks of the codes it takes.
        frames: Frames per call.

    Returns:
        ``path``.
    """
    chunk = DecoderChunk(prepare_for_export(model)).eval()
    chunk.export_onnx(torch.zeros(1, n_q, frames, dtype=torch.long), Path(path), ("codes", "audio"))
    return Path(path)


def export_step(model: Codec, path: str | Path, bandwidth_kbps: float | None = None) -> Path:
    """Writes the one-frame step of ``model`` to ``path``: ONNX for ``.onnx``, TorchScript for ``.pt``.

    Args:
        model: The codec (left untouched: a copy is prepared).
        path: Output file; its suffix picks the format.
        bandwidth_kbps: Bitrate fixing the codebooks per frame (default: all).

    Returns:
        ``path``.

    Raises:
        InputError: On another suffix.
        BandwidthError: Unsupported ``bandwidth_kbps``.
    """
    path = Path(path)
    if path.suffix not in STEP_FORMATS:
        raise InputError(f"cannot export a step to {path.name}: name it .onnx (onnxruntime) or .pt (TorchScript)")
    step = FrameStep(prepare_for_export(model), model.n_q_for_bandwidth(bandwidth_kbps)).eval()
    frame = torch.zeros(1, model.config.channels, model.hop_length)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".onnx":
        step.export_onnx(frame, path, ("frame", "codes", "audio"))
    else:
        past = step.initial_state()
        with torch.no_grad(), quiet_tracer():
            traced = torch.jit.trace(step, (frame, *past), check_trace=False)
        # A loaded trace keeps no input shapes or types: they go beside it.
        shapes = json.dumps([[list(t.shape), str(t.dtype).removeprefix("torch.")] for t in (frame, *past)])
        atomic_write(path, lambda p: torch.jit.save(traced, p, _extra_files={SHAPES_FILE: shapes}))
    return path


class StepRunner:
    """Runs an exported step (:func:`export_step`) one frame per call, holding the past between calls.

    Args:
        path: A ``.onnx`` file (onnxruntime, subnormals flushed) or a ``.pt`` one (TorchScript).
        threads: Threads of the ONNX session (TorchScript uses torch's setting).

    Raises:
        InputError: If ``path`` is missing or not an exported step.
    """

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        path = Path(path)
        if path.suffix not in STEP_FORMATS or not path.is_file():
            raise InputError(f"{path} is not an exported step file (.onnx or .pt from `codec export --step`)")
        self.format = STEP_FORMATS[path.suffix]
        if self.format == "onnx":
            import onnxruntime  # the `export` extra

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
            # Without the layout transforms of ORT_ENABLE_ALL (blocked NCHWc convolutions, and the reorders
            # around them), one-frame steps of the shipped model ran at the same median with a shorter tail:
            # p95 2.18 against 2.59 ms at 6 kbps, 1.51 against 1.66 ms at 2 kbps (idle machine, one thread).
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            options.add_session_config_entry("session.set_denormal_as_zero", "1")
            with _caller_subnormals():
                self._session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            inputs = self._session.get_inputs()
            self._names = [i.name for i in inputs]
            shapes = [tuple(i.shape) for i in inputs]
            dtypes = ["float64" if i.type == "tensor(double)" else "float32" for i in inputs]
        else:
            extra = {SHAPES_FILE: ""}
            self._module = torch.jit.load(str(path), _extra_files=extra).eval()
            described = json.loads(extra[SHAPES_FILE] or "[]")
            shapes, dtypes = [tuple(shape) for shape, _ in described], [dtype for _, dtype in described]
        if not shapes or len(shapes[0]) != 3:
            raise InputError(f"{path} is not an exported step: its first input is not a frame [1, C, hop]")
        self.frame_shape, self._past_types = shapes[0], list(zip(shapes[1:], dtypes[1:]))
        self.reset()

    def reset(self) -> None:
        """Forgets the past: the next frame is the first of a new stream."""
        self._past = [np.zeros(shape, dtype) for shape, dtype in self._past_types]
        if self.format == "onnx":
            self._bind()

    def _bind(self) -> None:
        """Binds the session's inputs and outputs to buffers made once (no allocation per frame): two sets
        of past buffers, each frame reading one and writing the other."""
        from onnxruntime import OrtValue

        outputs = self._session.get_outputs()
        self._frame = OrtValue.ortvalue_from_numpy(np.zeros(self.frame_shape, np.float32))
        self._outputs = [OrtValue.ortvalue_from_numpy(np.zeros(o.shape, np.int64 if "int64" in o.type else np.float32))
                         for o in outputs[:2]]
        buffers = [[OrtValue.ortvalue_from_numpy(p.copy()) for p in self._past] for _ in range(2)]
        self._bindings = []
        for read, write in ((buffers[0], buffers[1]), (buffers[1], buffers[0])):
            binding = self._session.io_binding()
            binding.bind_ortvalue_input(self._names[0], self._frame)
            for name, value in zip(self._names[1:], read, strict=True):
                binding.bind_ortvalue_input(name, value)
            for output, value in zip(outputs, [*self._outputs, *write], strict=True):
                binding.bind_ortvalue_output(output.name, value)
            self._bindings.append(binding)
        self._frames_run = 0

    def __call__(self, frame: Tensor) -> tuple[Tensor, Tensor]:
        """Codes ``[1, n_q, 1]`` and audio ``[1, C, hop]`` of the next ``frame`` [1, C, hop] (float32)."""
        if tuple(frame.shape) != self.frame_shape:
            raise InputError(f"a step takes one frame shaped {list(self.frame_shape)}, got {list(frame.shape)}")
        frame = frame.detach().to(torch.float32).contiguous()
        if self.format == "onnx":
            self._frame.update_inplace(frame.numpy())
            with _caller_subnormals():
                torch.set_flush_denormal(True)  # the session set it on this thread only when created
                self._session.run_with_iobinding(self._bindings[self._frames_run % 2])
            self._frames_run += 1
            codes, audio = self._outputs
            return torch.from_numpy(codes.numpy().copy()), torch.from_numpy(audio.numpy().copy())  # the buffers are reused
        with torch.no_grad():
            codes, audio, *past = self._module(frame, *(torch.from_numpy(p) for p in self._past))
        self._past = [p.numpy() for p in past]
        return codes, audio


@contextlib.contextmanager
def _caller_subnormals() -> Iterator[None]:
    """Gives the calling thread back its subnormal numbers if the block flushed them (onnxruntime's sessions
    set the processor's flush-to-zero flags when created and when run)."""
    kept = bool(_SUBNORMAL * np.float32(1.0) != 0)
    try:
        yield
    finally:
        if kept:
            torch.set_flush_denormal(False)


def check_step_parity(model: Codec, path: str | Path, wav: Tensor, bandwidth_kbps: float | None = None) -> Parity:
    """Streams ``wav`` [1, C, T] frame by frame through an exported step and compares with offline PyTorch.

    The audio is zero-padded to whole frames, as :meth:`Codec.encode` does.

    Args:
        model: The codec that was exported.
        path: Its exported step.
        wav: Audio at the model rate.
        bandwidth_kbps: The bitrate of the export.

    Returns:
        A :class:`~codec.export.Parity` of the streamed codes and audio against offline ``encode`` and ``decode``.
    """
    runner = StepRunner(path)
    wav = nn.functional.pad(wav, (0, -wav.shape[-1] % model.hop_length))
    codes = model.encode(wav, bandwidth_kbps=bandwidth_kbps).codes  # [1, n_q, F]
    reference = model.decode(codes)  # [1, C, F * hop]
    streamed = [runner(frame) for frame in wav.split(model.hop_length, dim=-1)]
    step_codes = torch.cat([c for c, _ in streamed], dim=-1)
    decoded = torch.cat([a for _, a in streamed], dim=-1)
    if step_codes.shape != codes.shape:
        raise CodecError(f"the step gives codes shaped {tuple(step_codes.shape)}, PyTorch {tuple(codes.shape)}: "
                         "export it again at this bitrate")
    cosine = nn.functional.cosine_similarity(decoded.flatten().double(), reference.flatten().double(), dim=0)
    return Parity(
        format=f"{runner.format} step",
        codes_equal=float((step_codes == codes).double().mean()),
        not_near_ties=count_real_differences(model, wav, codes, step_codes),
        max_abs_diff=float((decoded - reference).abs().max()),
        cosine=float(cosine),
        n_codes=codes.numel(),
    )
