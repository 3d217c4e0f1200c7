"""Decompression on onnxruntime: a model's decoder as a cached graph, so that decoding a file needs no PyTorch.

``import torch`` alone takes 1.5 s and 680 MB of memory (the PyPI build),
which every ``codec decompress`` paid before decoding a single frame. The
decoder is instead exported once per model and codebook count as an ONNX
graph of explicit state (:class:`codec.frame_step.DecoderChunk`), which
decodes :data:`CHUNK_FRAMES` frames of one channel per call and hands back
the decoder's past for the next call. The graph, the model's entropy
tables and a description go to one folder of the cache::

    $RVQ_CODEC_CACHE/<model id>/decoder-q<n_q>-f<frames>-v<version>/
        decoder.onnx  entropy.safetensors  decoder.json

``RVQ_CODEC_CACHE`` defaults to ``$XDG_CACHE_HOME/rvq-codec`` (or
``~/.cache/rvq-codec``); set it to an empty string to turn the cache off.
:func:`~codec.fileformat.compress.decompress` decodes with PyTorch the
first time a model meets a codebook count and writes the folder afterwards
(about a second); later files of that model and bitrate are decoded here,
importing no torch unless their rate differs from the model's (the
resampler is PyTorch's).

The output equals PyTorch's decoding up to float rounding, with one
amplification: the harmonic source integrates the pitch track into a phase,
so a pitch that differs in its last bit moves the phase of voiced frames
by up to a few thousandths of a radian over a chunk, and the phase is
carried on. On speech the two outputs agree to 60 dB SNR or better (tested).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from codec.atomic import write_json
from codec.fileformat.bitstream import Header
from codec.fileformat.entropy import EntropyTables

if TYPE_CHECKING:
    from codec.resolve import LoadedModel

#: Environment variable naming the cache folder; empty turns the cache off.
CACHE_ENV = "RVQ_CODEC_CACHE"
#: Frames of one channel per graph call (five seconds of the 16 kHz model, as PyTorch decodes).
CHUNK_FRAMES = 250
#: Version of the graph's inputs and outputs; a new one makes older folders unused.
GRAPH_VERSION = 1
GRAPH_FILE, INFO_FILE = "decoder.onnx", "decoder.json"


def cache_root() -> Path | None:
    """The cache folder, or ``None`` if ``RVQ_CODEC_CACHE`` is set empty."""
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        return Path(value).expanduser() if value else None
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rvq-codec"


def graph_folder(model_id: str, n_q: int) -> Path | None:
    """The folder of ``model_id``'s decoder graph for ``n_q`` codebooks (``None`` with the cache off)."""
    root = cache_root()
    return None if root is None else root / model_id / f"decoder-q{n_q}-f{CHUNK_FRAMES}-v{GRAPH_VERSION}"


@dataclass(frozen=True)
class GraphInfo:
    """What a cached decoder graph decodes; it serves a file only if all of it matches the file's header."""

    model_id: str
    n_q: int
    model_n_q: int
    frames: int
    hop_length: int
    model_sample_rate: int
    codebook_size: int
    entropy_tables: str
    version: int = GRAPH_VERSION

    def serves(self, header: Header) -> bool:
        """Whether this graph decodes the files of ``header``."""
        return (
            (self.model_id, self.n_q, self.hop_length, self.model_sample_rate, self.codebook_size)
            == (header.model_id, header.n_q, header.hop_length, header.model_sample_rate, header.codebook_size)
            and (not header.entropy_coded or self.entropy_tables == header.entropy_tables)
            and (self.frames, self.version) == (CHUNK_FRAMES, GRAPH_VERSION)
        )


class OnnxDecoder:
    """Decodes the codes of a file with a cached graph, one channel at a time, carrying each channel's past.

    Feed the codes in order with :meth:`feed` and finish with :meth:`flush`;
    together they return ``F * hop`` samples per channel for ``F`` frames.

    Args:
        folder: A folder written by :func:`save_decoder`.
        channels: Channels of the file.
        threads: Threads of the session.

    Raises:
        OSError, ValueError, onnxruntime's errors: On an unreadable folder.
    """

    def __init__(self, folder: Path, channels: int, threads: int = 1) -> None:
        import onnxruntime

        self.info = GraphInfo(**json.loads((folder / INFO_FILE).read_text()))
        self.tables = EntropyTables.load(folder, self.info.model_n_q, self.info.codebook_size)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        self._session = onnxruntime.InferenceSession(str(folder / GRAPH_FILE), options, providers=["CPUExecutionProvider"])
        inputs = self._session.get_inputs()
        self._names = [i.name for i in inputs]
        zeros = [np.zeros(i.shape, np.float64 if i.type == "tensor(double)" else np.float32) for i in inputs[1:]]
        self._past = [[z.copy() for z in zeros] for _ in range(channels)]
        self._held = np.zeros((channels, self.info.n_q, 0), np.int64)  # codes short of a whole call

    def feed(self, codes: np.ndarray) -> np.ndarray:
        """Codes ``[C, n_q, f]`` -> audio ``[C, n]`` of every whole call's worth held so far (``n`` may be 0)."""
        self._held = np.concatenate([self._held, codes.astype(np.int64, copy=False)], axis=-1)
        whole = self._held.shape[-1] // self.info.frames * self.info.frames
        audio = self._decode(self._held[..., :whole])
        self._held = self._held[..., whole:]
        return audio

    def flush(self) -> np.ndarray:
        """Audio ``[C, n]`` of the codes still held, decoded padded to a whole call and cropped (the decoder
        is causal, so the padding changes no earlier sample). The stream ends here."""
        held = self._held.shape[-1]
        padded = np.pad(self._held, ((0, 0), (0, 0), (0, -held % self.info.frames)))
        self._held = self._held[..., :0]
        return self._decode(padded)[:, : held * self.info.hop_length]

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        """Whole calls of codes ``[C, n_q, k * frames]`` -> audio ``[C, k * frames * hop]``."""
        frames = self.info.frames
        out = np.empty((codes.shape[0], codes.shape[-1] * self.info.hop_length), np.float32)
        for channel, past in enumerate(self._past):
            for start in range(0, codes.shape[-1], frames):
                feed = dict(zip(self._names, [codes[channel : channel + 1, :, start : start + frames], *past]))
                audio, *after = self._session.run(None, feed)  # audio [1, 1, frames * hop]
                past[:] = after
                span = slice(start * self.info.hop_length, (start + frames) * self.info.hop_length)
                out[channel, span] = audio[0, 0]
        return out


def find_decoder(header: Header, threads: int = 1) -> OnnxDecoder | None:
    """The cached decoder serving ``header``'s file, or ``None``: no cache, no folder or no onnxruntime, or a
    folder that does not load or does not match the header, which is then removed with a warning."""
    folder = graph_folder(header.model_id, header.n_q)
    if folder is None or not (folder / INFO_FILE).is_file():
        return None
    try:
        import onnxruntime  # noqa: F401  (the `export` extra)
    except ImportError:
        return None
    try:
        decoder = OnnxDecoder(folder, header.channels, threads)
        if not decoder.info.serves(header):
            raise ValueError("it was written for another model, bitrate or graph version")
    except Exception as e:  # noqa: BLE001  a cache is disposable: whatever fails to load is removed and rewritten
        warnings.warn(f"removed the damaged cached decoder {folder} ({type(e).__name__}: {e}); decoding with PyTorch",
                      stacklevel=2)
        shutil.rmtree(folder, ignore_errors=True)
        return None
    return decoder


def save_decoder(loaded: LoadedModel, n_q: int) -> Path | None:
    """Exports ``loaded``'s decoder for ``n_q`` codebooks to the cache, unless it is there or the cache is off.

    The folder is written under a temporary name and renamed into place, so
    a folder that exists is complete. A failure (no onnx or onnxruntime, a
    read-only cache) leaves nothing behind and is reported as a warning:
    decoding with PyTorch keeps working.

    Returns:
        The folder, or ``None`` when nothing was written.
    """
    from codec.frame_step import export_decoder_chunk

    codec = loaded.codec
    folder = graph_folder(loaded.model_id, n_q)
    if folder is None or folder.is_dir():
        return None
    info = GraphInfo(loaded.model_id, n_q, codec.config.n_q, CHUNK_FRAMES, codec.hop_length, codec.sample_rate,
                     codec.config.codebook_size, loaded.tables.digest)
    tmp: Path | None = None
    try:
        import onnx  # noqa: F401  (the `export` extra; the exporter needs it)
        import onnxruntime  # noqa: F401

        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
        export_decoder_chunk(codec, tmp / GRAPH_FILE, n_q, CHUNK_FRAMES)
        loaded.tables.save(tmp)
        write_json(tmp / INFO_FILE, asdict(info))
        os.rename(tmp, folder)
        return folder
    except ImportError:
        return None
    except (OSError, RuntimeError) as e:
        if folder.is_dir():  # another process finished first
            return None
        warnings.warn(f"could not cache the onnxruntime decoder in {folder} ({e}); decoding stays on PyTorch",
                      stacklevel=2)
        return None
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
