"""Compressing audio files to the rvq-codec format and back (docs/format.md).

The library behind ``codec compress``, ``decompress``, ``info`` and
``truncate`` (:mod:`codec.cli.files`); ``-`` stands for stdin or stdout.
Audio of any rate and channel count is resampled to the model rate and its
channels coded as independent batch items; decompression restores the
original rate and channels.

Long files are processed one chunk at a time with the streaming state of
the model carried across chunks, so the output equals an offline
encode/decode of the whole file and memory does not grow with its length:
input is read in one-second blocks and resampled block by block
(:class:`~codec.fileformat.chunked_resample.ChunkedResampler`, same output
as resampling whole), the codes of each chunk go to a temporary file and the header,
which records the exact sample count read, is written before them at the
end. Compression encodes and decompression decodes a few chunks per call
(:data:`ENCODE_SECONDS`, :data:`DECODE_SECONDS`).
Standard input is first spooled to a temporary file on disk (audio
readers need to seek). Every output goes to a temporary file that replaces
the destination only on success; on any failure, Ctrl-C included, nothing
is left behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from codec.atomic import atomic_path, check_output, output_target
from codec.errors import FormatError, InputError, ModelMismatchError, ModelNotFoundError, OutputError
from codec.fileformat import bitstream
from codec.fileformat.bitstream import Header
from codec.resolve import LoadedModel, load_model  # re-exported: compress.load_model

if TYPE_CHECKING:
    import numpy as np
    import soundfile as sf
    from torch import Tensor
    from tqdm import tqdm

    from codec.fileformat.entropy import EntropyTables
    from codec.network.model import Codec

# torch, numpy, soundfile, the model and the entropy coder are imported where they are used, so
# `codec info` and `codec truncate` (plain bytes) start in a fraction of a second, and a decompression
# on the cached onnxruntime decoder imports no torch.

#: Seconds of audio encoded per call when compressing (:func:`encode_group`).
ENCODE_SECONDS = 2.0
#: Seconds of audio decoded per call when decompressing (:func:`decode_frames`).
DECODE_SECONDS = 5.0
#: Files at least this long get a progress bar.
PROGRESS_MIN_SECONDS = 5.0
STDIO = "-"
#: soundfile reports at least this many frames for a stream whose length is unknown.
_UNKNOWN_FRAMES = 1 << 62


# ----- models -------------------------------------------------------------------------------------
def _resolve(model: LoadedModel | Codec | str | Path | None) -> LoadedModel:
    from codec.network.model import Codec

    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, Codec):
        return LoadedModel.from_codec(model)
    return load_for_coding(model)


def load_for_coding(spec: str | Path | None) -> LoadedModel:
    """:func:`~codec.resolve.load_model` for compressing and decompressing only: its weights folded, so that
    streaming keeps one copy of each weight (:meth:`~codec.network.model.Codec.fold_for_inference`)."""
    loaded = load_model(spec)
    loaded.codec.fold_for_inference()
    return loaded


def _model_for_file(header: Header, model: LoadedModel | Codec | str | Path | None) -> LoadedModel:
    """The model to decode ``header``'s file: the one given, else the bundled one it names; checked."""
    from codec.network.model import pretrained_names

    if model is None:
        if header.model_name not in pretrained_names():
            raise ModelNotFoundError(
                f"the file was written by model {header.model_name!r} (id {header.model_id}), which is not "
                "bundled with rvq-codec; pass --model DIR with that model"
            )
        model = header.model_name
    loaded = _resolve(model)
    if loaded.model_id != header.model_id:
        raise ModelMismatchError(
            f"the file was written by model {header.model_name!r} (id {header.model_id}) but the loaded model "
            f"is {loaded.name!r} (id {loaded.model_id}); pass --model with the model that wrote the file"
        )
    config = loaded.codec.config
    fields = (header.model_sample_rate, header.hop_length, header.codebook_size)
    if fields != (config.sample_rate, config.hop_length, config.codebook_size) or header.n_q > config.n_q:
        raise FormatError("the header contradicts the model whose id it carries: the file is corrupt")
    if header.entropy_coded and header.entropy_tables != loaded.tables.digest:
        raise ModelMismatchError(
            f"the file was entropy-coded with tables {header.entropy_tables} but model {loaded.name!r} has "
            f"tables {loaded.tables.digest} (its entropy.safetensors); use the model directory that wrote it"
        )
    return loaded


# ----- files --------------------------------------------------------------------------------------
@contextlib.contextmanager
def _atomic_output(dst: str | Path, inputs: tuple[str | Path, ...] = ()) -> Iterator[str]:
    """Yields a temporary path that replaces ``dst`` (or goes to stdout for ``-``) on success only.

    Raises:
        OutputError: If ``dst`` is one of ``inputs``, a directory or a special file
            (:func:`codec.atomic.check_output`), or cannot be written.
    """
    if str(dst) != STDIO:
        check_output(dst, [i for i in inputs if str(i) != STDIO])
        with atomic_path(dst) as tmp:
            yield tmp
        return
    stdout = _stdout()
    fd, tmp = tempfile.mkstemp(prefix="codec-stdout-")  # private (mode 0600), removed whatever happens
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            shutil.copyfileobj(f, stdout)
        stdout.flush()
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _stdout() -> BinaryIO:
    """Standard output as bytes; :class:`OutputError` if it was closed when the program started."""
    if sys.stdout is None:
        raise OutputError("standard output is closed; give an output file instead of -")
    return sys.stdout.buffer


def _check_input(src: str | Path, what: str) -> None:
    """Raises :class:`InputError` if ``src`` does not exist or is a directory."""
    path = Path(src)
    if path.is_dir():
        raise InputError(f"{what} {src} is a directory; give a file")
    if not path.exists():
        raise InputError(f"{what} {src} does not exist")


@contextlib.contextmanager
def _open_binary(src: str | Path) -> Iterator[BinaryIO]:
    """Opens a compressed file, or stdin for ``-``."""
    if str(src) == STDIO:
        yield sys.stdin.buffer
        return
    _check_input(src, "compressed file")
    with open(src, "rb") as f:
        yield f


def _forward_reader(source: str | BinaryIO) -> sf.SoundFile:
    """``source`` opened as an audio file read front to back only.

    soundfile seeks after every read of a seekable file to track its
    position; that seek fails on streams of unknown length (FLAC written to a
    pipe by ffmpeg). Reading forward never needs it.
    """
    import soundfile as sf

    class ForwardReader(sf.SoundFile):
        def seekable(self) -> bool:
            """Always ``False``: reads go forward and stop at the end of the data."""
            return False

    return ForwardReader(source)


@contextlib.contextmanager
def _open_audio(src: str | Path) -> Iterator[sf.SoundFile]:
    """Opens an audio file for reading; stdin (``-``) is spooled to a temporary file first."""
    import soundfile as sf

    with contextlib.ExitStack() as stack:
        if str(src) == STDIO:
            source = stack.enter_context(tempfile.TemporaryFile())
            shutil.copyfileobj(sys.stdin.buffer, source)
            if not source.tell():
                raise InputError("standard input is empty; pipe audio into it or give an audio file")
            source.seek(0)
            name = "standard input"
        else:
            _check_input(src, "audio file")
            source, name = str(src), str(src)
        try:
            sound = stack.enter_context(_forward_reader(source))
        except (sf.LibsndfileError, RuntimeError, OSError) as e:
            reason = getattr(e, "error_string", None) or str(e)
            raise InputError(f"cannot read audio from {name}: {reason}") from None
        if sound.frames == 0:
            raise InputError(f"audio from {name} holds no samples")
        if sound.samplerate > bitstream.MAX_SAMPLE_RATE:
            raise InputError(
                f"audio from {name} is at {sound.samplerate} Hz; the format holds rates up to "
                f"{bitstream.MAX_SAMPLE_RATE} Hz: resample it first"
            )
        if sound.channels > bitstream.MAX_CHANNELS:
            raise InputError(
                f"audio from {name} has {sound.channels} channels; the format holds 1 to {bitstream.MAX_CHANNELS}: "
                "split the channels into several files first"
            )
        yield sound


def _output_format(dst: str | Path) -> tuple[str, str]:
    """soundfile format and subtype for ``dst`` from its extension (WAV for stdout)."""
    from codec.audio import WRITE_FORMATS

    if str(dst) == STDIO:
        return WRITE_FORMATS[".wav"]
    fmt = WRITE_FORMATS.get(Path(dst).suffix.lower())
    if fmt is None:
        raise InputError(f"cannot choose an audio format for {dst}; use one of {', '.join(WRITE_FORMATS)}")
    return fmt


def _progress(seconds: float | None, enabled: bool) -> tqdm:
    """A progress bar in seconds of audio on stderr, for lengths known and at least :data:`PROGRESS_MIN_SECONDS`."""
    from tqdm import tqdm

    shown = enabled and seconds is not None and seconds >= PROGRESS_MIN_SECONDS
    return tqdm(
        total=round(seconds or 0, 2), unit="s", file=sys.stderr, leave=False, disable=not shown,
        bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s",
    )


# ----- encoding -----------------------------------------------------------------------------------
def frames_per_chunk(codec: Codec, channels: int = 1) -> int:
    """Frames in one chunk of ``channels`` channels: one second's worth, within the format's chunk limits."""
    hop = codec.hop_length
    limit = min(bitstream.MAX_CHUNK_SAMPLES // hop, bitstream.MAX_CHUNK_CHANNEL_SAMPLES // (channels * hop))
    return max(1, min(round(codec.frame_rate_hz), limit))


def encode_chunks(
    codec: Codec, blocks: Iterator[Tensor], channels: int, n_q: int, chunk_frames: int, group_chunks: int = 1
) -> Iterator[np.ndarray]:
    """Encodes a signal given as consecutive model-rate blocks ``[C, n]`` into chunks of codes.

    Runs inside ``codec.streaming``: each call encodes ``group_chunks`` chunks of
    ``chunk_frames`` frames with the state left by the previous call, and the
    last is padded with zeros to whole frames, so the concatenated codes equal
    ``codec.encode`` of the whole signal whatever the grouping.

    Yields:
        Codes ``[C, n_q, f]`` of each chunk (int64), ``f = chunk_frames`` but for the last.
    """
    import torch

    size = group_chunks * chunk_frames * codec.hop_length
    bandwidth = codec.bandwidths_kbps[n_q - 1]

    def encoded(signal: Tensor) -> Iterator[np.ndarray]:  # [C, n] -> codes [C, n_q, f] per chunk
        codes = codec.encode(signal[:, None, :], bandwidth).codes.numpy()
        return (codes[..., i : i + chunk_frames] for i in range(0, codes.shape[-1], chunk_frames))

    pending: list[Tensor] = []
    held = 0
    with codec.streaming(batch_size=channels):
        for block in blocks:
            pending.append(block)
            held += block.shape[-1]
            while held >= size:
                signal = torch.cat(pending, dim=-1)  # [C, held]
                pending, held = [signal[:, size:]], held - size
                yield from encoded(signal[:, :size])
        if held:
            signal = torch.cat(pending, dim=-1)  # [C, held]
            yield from encoded(torch.nn.functional.pad(signal, (0, -held % codec.hop_length)))


def encode_group(codec: Codec, chunk_frames: int, channels: int = 1) -> int:
    """Chunks encoded per call when compressing: :data:`ENCODE_SECONDS` of ``channels`` channels, at least one.

    One-second calls leave the encoder's LSTM and nearest-code search a fifth
    slower than two-second ones, and longer calls gain nothing: one thread
    encoded 2 minutes of speech in 1.52 s in one-second calls, 1.38 s in two-
    or five-second calls; two seconds add 5.5 MB of activations to one
    second's 10.5 MB, five seconds 19 MB."""
    return max(1, round(ENCODE_SECONDS * codec.frame_rate_hz / (chunk_frames * channels)))


def _model_rate_blocks(sound: sf.SoundFile, model_rate: int, counter: list[int], bar: tqdm) -> Iterator[Tensor]:
    """Reads ``sound`` in one-second blocks resampled to ``model_rate``: [C, n] each.

    Adds the input samples read to ``counter[0]``.

    Raises:
        InputError: If the audio data cannot be decoded.
    """
    import soundfile as sf
    import torch

    from codec.fileformat.chunked_resample import ChunkedResampler

    resampler = ChunkedResampler(sound.samplerate, model_rate, sound.channels)
    while True:
        try:
            block = sound.read(sound.samplerate, dtype="float32", always_2d=True)  # [n, C]
        except (sf.LibsndfileError, RuntimeError) as e:
            raise InputError(f"cannot decode the audio after {counter[0]} samples: {e}") from None
        if not len(block):
            break
        counter[0] += block.shape[0]
        bar.update(round(block.shape[0] / sound.samplerate, 2))
        yield resampler.process(torch.from_numpy(block.T.copy()))
    yield resampler.flush()


def compress(
    src: str | Path,
    dst: str | Path,
    model: LoadedModel | Codec | str | Path | None = None,
    bandwidth_kbps: float | None = None,
    entropy_coding: bool = True,
    progress: bool = False,
) -> Header:
    """Compresses an audio file.

    Args:
        src: Any file soundfile reads, or ``-`` for stdin.
        dst: Compressed file to write, or ``-`` for stdout.
        model: A loaded model, a directory or bundled name (default: :data:`DEFAULT_MODEL`).
        bandwidth_kbps: Nominal bitrate per channel (default: all codebooks).
        entropy_coding: ANS-code the codes with the model's tables (else bit-pack them).
        progress: Show a progress bar on stderr for files longer than a few seconds.

    Returns:
        The header written.

    Raises:
        InputError: On unreadable, empty or non-finite audio.
        BandwidthError: On an unsupported bitrate.
        ModelNotFoundError: If the model cannot be found.
    """
    from codec.fileformat.entropy import encode_codes

    loaded = _resolve(model)
    codec = loaded.codec
    if codec.config.channels != 1:
        raise InputError(f"compress needs a model of a mono network; {loaded.name!r} takes {codec.config.channels}")
    n_q = codec.n_q_for_bandwidth(bandwidth_kbps)
    tables = loaded.tables if entropy_coding else None
    with _open_audio(src) as sound, tempfile.TemporaryFile() as body, _atomic_output(dst, (src,)) as tmp:
        chunk_frames = frames_per_chunk(codec, sound.channels)
        counter, num_frames = [0], 0
        known = sound.frames < _UNKNOWN_FRAMES
        with _progress(sound.frames / sound.samplerate if known else None, progress) as bar:
            blocks = _model_rate_blocks(sound, codec.sample_rate, counter, bar)
            group = encode_group(codec, chunk_frames, sound.channels)
            for index, codes in enumerate(encode_chunks(codec, blocks, sound.channels, n_q, chunk_frames, group)):
                coded = encode_codes(codes, tables, codec.config.codebook_size)
                body.write(bitstream.chunk_bytes(bitstream.Chunk(index, codes.shape[-1], coded)))
                num_frames += codes.shape[-1]
        if counter[0] == 0:
            raise InputError(f"audio from {src} holds no samples")
        header = Header(
            model_id=loaded.model_id, model_name=loaded.name, sample_rate=sound.samplerate,
            model_sample_rate=codec.sample_rate, channels=sound.channels, num_samples=counter[0],
            hop_length=codec.hop_length, frames_per_chunk=chunk_frames, n_q=n_q,
            codebook_size=codec.config.codebook_size, entropy_coded=entropy_coding,
            entropy_tables=tables.digest if tables is not None else None,
        )
        if num_frames != header.num_frames:  # the resampler and encoder gave the lengths the header implies
            raise RuntimeError(f"encoded {num_frames} frames where the header implies {header.num_frames}")
        with open(tmp, "wb") as out:
            out.write(bitstream.header_bytes(header))
            body.seek(0)
            shutil.copyfileobj(body, out)
    return header


# ----- decoding -----------------------------------------------------------------------------------
def decode_stream(f: BinaryIO, header: Header, loaded: LoadedModel, bar: tqdm | None = None) -> Iterator[Tensor]:
    """Decodes the chunks of ``f`` (positioned after ``header``) to audio at the original rate, with PyTorch.

    Runs inside ``codec.streaming``, on :data:`DECODE_SECONDS` of chunks per
    call, so the concatenated output equals the offline decode of all codes
    (cropped to the model-rate length), then resampled to
    ``header.sample_rate`` as a whole would be.

    Yields:
        Consecutive blocks ``[C, n]``, ``header.num_samples`` samples in all.

    Raises:
        FormatError: On a corrupt chunk (naming it).
    """
    import torch

    codec = loaded.codec
    tables = loaded.tables if header.entropy_coded else None

    def decode(codes: np.ndarray) -> np.ndarray:  # [C, n_q, f] -> [C, n]
        with torch.no_grad():
            return codec.decode(torch.from_numpy(codes))[:, 0].numpy()

    with codec.streaming(batch_size=header.channels):
        frames = decode_frames(codec, header.channels)
        for block in _decoded_blocks(f, header, tables, frames, decode, None, bar):
            yield torch.from_numpy(block)


def _decoded_blocks(
    f: BinaryIO,
    header: Header,
    tables: EntropyTables | None,
    frames: int,
    decode: Callable[[np.ndarray], np.ndarray],
    flush: Callable[[], np.ndarray] | None,
    bar: tqdm | None,
) -> Iterator[np.ndarray]:
    """Audio blocks ``[C, n]`` at the original rate, ``header.num_samples`` in all, from a streaming decoder.

    Args:
        f, header: The file, positioned after its header.
        tables: Entropy tables (``None`` for bit-packed codes).
        frames: Frames of codes per ``decode`` call (the last may hold fewer).
        decode: Codes ``[C, n_q, f]`` -> model-rate audio ``[C, n]``, carrying its state.
        flush: Audio the decoder still holds at the end, if it holds any.
        bar: Progress bar, advanced in seconds.
    """
    resampler = None
    if header.sample_rate != header.model_sample_rate:  # PyTorch's resampler: only then is torch imported
        import torch

        from codec.fileformat.chunked_resample import ChunkedResampler

        resampler = ChunkedResampler(header.model_sample_rate, header.sample_rate, header.channels)
    model_left, out_left = header.model_num_samples, header.num_samples

    def at_original_rate(wav: np.ndarray) -> np.ndarray:  # [C, n] at the model rate
        nonlocal model_left, out_left
        wav = wav[:, :model_left]
        model_left -= wav.shape[-1]
        if resampler is not None:
            wav = resampler.process(torch.from_numpy(wav)).numpy()
        wav = wav[:, :out_left]
        out_left -= wav.shape[-1]
        return wav

    for codes in _grouped_codes(f, header, tables, frames):  # [C, n_q, f]
        yield at_original_rate(decode(codes))
        if bar is not None:
            bar.update(round(codes.shape[-1] / header.frame_rate_hz, 2))
    if flush is not None:
        yield at_original_rate(flush())
    if resampler is not None:
        yield resampler.flush().numpy()[:, :out_left]


def decode_frames(codec: Codec, channels: int = 1) -> int:
    """Frames decoded per call when decompressing: :data:`DECODE_SECONDS` of ``channels`` channels.

    The decoder's matrix products run at a fraction of their speed on one
    second (50 frames of the 16 kHz model). Five seconds decode as fast as
    ten with a fifth of the activations: a 10-minute file in 7.9 s against
    13.1 s in one-second calls, peak RSS 6 MB above the loaded model against
    27 MB for ten seconds (one thread, in process)."""
    return max(1, round(DECODE_SECONDS * codec.frame_rate_hz / channels))


def _grouped_codes(f: BinaryIO, header: Header, tables: EntropyTables | None, frames: int) -> Iterator[np.ndarray]:
    """The codes ``[C, n_q, f]`` of consecutive chunks, joined until they hold at least ``frames`` frames."""
    import numpy as np

    group: list[np.ndarray] = []
    held = 0
    for chunk in bitstream.iter_chunks(f, header):
        group.append(_chunk_codes(chunk, header, tables))
        held += chunk.num_frames
        if held >= frames:
            yield np.concatenate(group, axis=-1)
            group, held = [], 0
    if group:
        yield np.concatenate(group, axis=-1)


def read_codes(src: str | Path, model: LoadedModel | Codec | str | Path | None = None) -> tuple[Header, Tensor]:
    """The codes of a compressed file, without running the decoder network.

    Args:
        src: Compressed file, or ``-`` for stdin.
        model: The model that wrote the file, for its entropy tables (default:
            the bundled model the file names).

    Returns:
        The header and the codes ``[C, n_q, F]`` (int64).

    Raises:
        FormatError: On a corrupt or truncated file.
        ModelMismatchError: If ``model`` is not the one that wrote the file.
    """
    import numpy as np
    import torch

    with _open_binary(src) as f:
        header = bitstream.read_header(f)
        loaded = _model_for_file(header, model)
        tables = loaded.tables if header.entropy_coded else None
        parts = [_chunk_codes(chunk, header, tables) for chunk in bitstream.iter_chunks(f, header)]
    return header, torch.from_numpy(np.concatenate(parts, axis=-1))


def _chunk_codes(chunk: bitstream.Chunk, header: Header, tables: EntropyTables | None) -> np.ndarray:
    """Codes ``[C, n_q, f]`` of one chunk; errors name the chunk."""
    from codec.fileformat.entropy import decode_codes

    try:
        return decode_codes(chunk.blocks, header.channels, chunk.num_frames, tables, header.codebook_size)
    except FormatError as e:
        raise FormatError(f"chunk {chunk.index}: {e}") from None


def decompress(
    src: str | Path,
    dst: str | Path,
    model: LoadedModel | Codec | str | Path | None = None,
    progress: bool = False,
    cache: bool = True,
    threads: int | None = None,
) -> Header:
    """Decompresses a file to audio at its original rate and channel count.

    Without ``model``, the file is decoded on onnxruntime when the decoder of
    its model and bitrate is in the cache (:mod:`codec.fileformat.onnx_decode`),
    without importing PyTorch; otherwise PyTorch decodes it and the decoder
    is cached afterwards.

    Args:
        src: Compressed file, or ``-`` for stdin.
        dst: Audio file to write (format from the extension: wav, flac), or ``-`` (WAV on stdout).
        model: The model that wrote the file (default: the bundled model it names).
        progress: Show a progress bar on stderr for files longer than a few seconds.
        cache: Use and fill the onnxruntime decoder cache (``RVQ_CODEC_CACHE``).
        threads: Threads to decode with (default: PyTorch's setting, or one for onnxruntime).

    Returns:
        The header of the file.

    Raises:
        FormatError: On a corrupt or truncated file (naming the chunk).
        ModelMismatchError: If ``model`` is not the one that wrote the file.
        ModelNotFoundError: If no model is given and the file's is not bundled.
    """
    import numpy as np
    import soundfile as sf

    from codec.audio import check_write_rate
    from codec.fileformat import onnx_decode

    fmt, subtype = _output_format(dst)
    with _open_binary(src) as f:
        header = bitstream.read_header(f)
        check_write_rate(fmt, header.sample_rate, "standard output" if str(dst) == STDIO else dst)
        fast = onnx_decode.find_decoder(header, threads or 1) if model is None and cache else None
        if fast is None and threads:
            import torch

            torch.set_num_threads(threads)
        loaded = None if fast is not None else _model_for_file(header, model)
        with (
            _atomic_output(dst, (src,)) as tmp,
            _progress(header.duration_s, progress) as bar,
            _writing(dst),
            sf.SoundFile(tmp, "w", header.sample_rate, header.channels, subtype, format=fmt) as out,
        ):
            if fast is not None:
                tables = fast.tables if header.entropy_coded else None
                blocks = _decoded_blocks(f, header, tables, onnx_decode.CHUNK_FRAMES, fast.feed, fast.flush, bar)
            else:
                blocks = (block.numpy() for block in decode_stream(f, header, loaded, bar))
            for block in blocks:
                out.write(np.clip(block, -1, 1).T)
    if loaded is not None and model is None and cache:  # decoded with PyTorch: cache the decoder for next time
        onnx_decode.save_decoder(loaded, header.n_q)
    return header


@contextlib.contextmanager
def _writing(dst: str | Path) -> Iterator[None]:
    """Turns libsndfile's errors while writing ``dst`` into :class:`OutputError` (a full disk, mostly)."""
    import soundfile as sf

    try:
        yield
    except sf.LibsndfileError as e:
        folder = Path(tempfile.gettempdir() if str(dst) == STDIO else output_target(dst).parent)
        full = shutil.disk_usage(folder).free < 1 << 20  # libsndfile reports ENOSPC as "System error."
        raise OutputError(f"cannot write {dst}: {'no space left on the device' if full else e.error_string}") from None


# ----- inspection and truncation ------------------------------------------------------------------
@dataclass
class FileInfo:
    """A compressed file's header and its measured size.

    Attributes:
        header: The file's header.
        file_bytes: Size of the whole file.
        codebook_bytes: Bytes of each codebook's blocks over all chunks ``[n_q]``.
    """

    header: Header
    file_bytes: int
    codebook_bytes: list[int]

    @property
    def bits_per_second(self) -> float:
        """Measured bitrate of the whole file, all channels, header included."""
        return self.file_bytes * 8 / self.header.duration_s


def read_info(src: str | Path) -> FileInfo:
    """Reads a compressed file through, checking every chunk, and measures it.

    Raises:
        FormatError: On a corrupt or truncated file.
    """
    with _open_binary(src) as f:
        header = bitstream.read_header(f)
        sizes = [0] * header.n_q
        total = len(bitstream.header_bytes(header))
        for chunk in bitstream.iter_chunks(f, header):
            sizes = [s + len(b) for s, b in zip(sizes, chunk.blocks)]
            total += len(bitstream.chunk_bytes(chunk))
    return FileInfo(header=header, file_bytes=total, codebook_bytes=sizes)


def format_info(info: FileInfo) -> str:
    """The lines ``codec info`` prints."""
    h = info.header
    per_codebook = ", ".join(f"{b * 8 / h.duration_s / 1000:.3g}" for b in info.codebook_bytes)
    entropy = f"yes (tables {h.entropy_tables})" if h.entropy_coded else "no (bit-packed)"
    rows = [
        ("format version", str(bitstream.FORMAT_VERSION)),
        ("model", f"{h.model_name} (id {h.model_id})"),
        ("sample rate", f"{h.sample_rate} Hz (model: {h.model_sample_rate} Hz)"),
        ("channels", str(h.channels)),
        ("duration", f"{h.duration_s:.3f} s ({h.num_samples} samples)"),
        ("frame rate", f"{h.frame_rate_hz:g} Hz ({h.num_frames} frames in {h.num_chunks} chunks)"),
        ("codebooks", f"{h.n_q} x {h.codebook_size} entries"),
        ("bitrate", f"{h.bandwidth_kbps:g} kbps per channel, {h.bandwidth_kbps * h.channels:g} kbps in all (nominal)"),
        ("entropy coding", entropy),
        ("measured", f"{info.bits_per_second:.0f} bits per second ({info.file_bytes} bytes)"),
        ("per codebook", f"{per_codebook} kbps"),
    ]
    return "\n".join(f"{name + ':':<16}{value}" for name, value in rows)


def truncate(src: str | Path, dst: str | Path, bandwidth_kbps: float) -> Header:
    """Lowers a file's bitrate by dropping its finest codebooks, without decoding.

    Returns:
        The header written.

    Raises:
        BandwidthError: If ``bandwidth_kbps`` is not one the file can be cut to.
        FormatError: On a corrupt file.
    """
    with _open_binary(src) as f:
        header = bitstream.read_header(f)
        n_q = bitstream.n_q_for_bandwidth(header, bandwidth_kbps)
        with _atomic_output(dst, (src,)) as tmp, open(tmp, "wb") as out:
            return bitstream.truncate_stream(header, f, out, n_q)
