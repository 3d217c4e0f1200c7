"""The compressed file format: header, chunks, checksums (see docs/format.md).

    file   = header chunk*
    header = "RVQC" | u16 version | u32 n | n bytes of JSON | u32 CRC32(all before)
    chunk  = u32 m | payload (m bytes) | u32 CRC32(payload)
    payload = u32 index | u32 frames | u16 n_q | n_q x (u32 length | block)

Integers are little-endian. A chunk holds ``frames_per_chunk`` frames (the
last one fewer); its blocks are codebook-major, block ``k`` holding the codes
of codebook ``k`` for every channel (channel-major, then time), entropy-coded
or bit-packed. Dropping codebooks (:func:`truncate_stream`) drops the last
blocks of each chunk and touches nothing else. Nothing is executable: the
header is JSON read with ``json.loads`` and checked field by field.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from codec.errors import BandwidthError, FormatError

MAGIC = b"RVQC"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<4sHI")  # magic, version, JSON length
_U32 = struct.Struct("<I")
_CHUNK_HEAD = struct.Struct("<IIH")  # index, frames, codebooks
#: Bounds that keep a corrupted length from asking for absurd reads.
MAX_HEADER_BYTES = 1 << 16
_LIMITS = {
    "sample_rate": 1 << 20, "model_sample_rate": 1 << 20, "channels": 1 << 10, "hop_length": 1 << 20,
    "frames_per_chunk": 1 << 20, "n_q": 1 << 8, "codebook_size": 1 << 16,
    "num_samples": 1 << 48, "num_frames": 1 << 48,
}


@dataclass(frozen=True)
class Header:
    """What a decoder needs to know before the first chunk.

    Attributes:
        model_id: :attr:`codec.model.Codec.model_id` of the writing model.
        model_name: Bundled model name, or the config name of the writing model.
        sample_rate: Rate of the original audio in Hz (restored on decoding).
        model_sample_rate: Rate the model works at in Hz.
        channels: Channels of the original audio, coded as independent batch items.
        num_samples: Samples per channel of the original audio.
        hop_length: Model-rate samples per frame.
        num_frames: Frames per channel in the file.
        frames_per_chunk: Frames in every chunk but the last.
        n_q: Codebooks per frame in the file.
        codebook_size: Entries per codebook.
        entropy_coded: Whether blocks are ANS-coded (else bit-packed).
        entropy_tables: Digest of the entropy tables (``None`` when bit-packed).
    """

    model_id: str
    model_name: str
    sample_rate: int
    model_sample_rate: int
    channels: int
    num_samples: int
    hop_length: int
    num_frames: int
    frames_per_chunk: int
    n_q: int
    codebook_size: int
    entropy_coded: bool
    entropy_tables: str | None

    def __post_init__(self) -> None:
        self._check()

    @property
    def frame_rate_hz(self) -> float:
        """Frames per second per channel."""
        return self.model_sample_rate / self.hop_length

    @property
    def duration_s(self) -> float:
        """Duration of the original audio in seconds."""
        return self.num_samples / self.sample_rate

    @property
    def model_num_samples(self) -> int:
        """Samples per channel at the model rate (the resampled length)."""
        return -(-self.num_samples * self.model_sample_rate // self.sample_rate)  # exact integer ceil

    @property
    def num_chunks(self) -> int:
        """Chunks in the file."""
        return -(-self.num_frames // self.frames_per_chunk)

    @property
    def bandwidth_kbps(self) -> float:
        """Nominal bitrate per channel (before entropy coding)."""
        return bandwidth_kbps(self.n_q, self.frame_rate_hz, self.codebook_size)

    def chunk_frames(self, index: int) -> int:
        """Frames in chunk ``index``."""
        return min(self.frames_per_chunk, self.num_frames - index * self.frames_per_chunk)

    def _check(self) -> None:
        for key, limit in _LIMITS.items():
            value = getattr(self, key)
            if type(value) is not int or not 1 <= value <= limit:
                raise FormatError(f"header field {key} = {value!r} is out of range 1..{limit}")
        for key in ("model_id", "model_name"):
            if not isinstance(getattr(self, key), str) or not 0 < len(getattr(self, key)) <= 256:
                raise FormatError(f"header field {key} must be a non-empty string")
        if not isinstance(self.entropy_coded, bool):
            raise FormatError("header field entropy_coded must be true or false")
        tables_ok = isinstance(self.entropy_tables, str) and 0 < len(self.entropy_tables) <= 256
        if not (tables_ok if self.entropy_coded else self.entropy_tables is None):
            raise FormatError("header field entropy_tables must be a digest when entropy_coded is true, else null")
        if self.num_chunks >= 1 << 32:
            raise FormatError(f"header asks for {self.num_chunks} chunks, more than the format allows")
        frames = -(-self.model_num_samples // self.hop_length)
        if self.num_frames != frames:
            raise FormatError(
                f"header is inconsistent: {self.num_samples} samples at {self.sample_rate} Hz need "
                f"{frames} frames, not {self.num_frames}"
            )


def bandwidth_kbps(n_q: int, frame_rate_hz: float, codebook_size: int) -> float:
    """Nominal kbps of ``n_q`` codebooks, computed as :attr:`codec.config.CodecConfig.bandwidths_kbps` does."""
    per_codebook = frame_rate_hz * math.log2(codebook_size) / 1000.0
    return round(n_q * per_codebook, 6)


def n_q_for_bandwidth(header: Header, kbps: float) -> int:
    """Codebooks of the file's model that give ``kbps`` (at most the file's own count).

    Raises:
        BandwidthError: If no count up to ``header.n_q`` gives ``kbps``.
    """
    rates = [bandwidth_kbps(n, header.frame_rate_hz, header.codebook_size) for n in range(1, header.n_q + 1)]
    for n, rate in enumerate(rates, start=1):
        if math.isclose(rate, kbps, rel_tol=1e-3):
            return n
    raise BandwidthError(
        f"{kbps:g} kbps is not available from this file ({header.bandwidth_kbps:g} kbps); "
        f"choose one of: {', '.join(f'{r:g}' for r in rates)}"
    )


@dataclass
class Chunk:
    """One chunk of codes.

    Attributes:
        index: Position of the chunk in the file, from 0.
        num_frames: Frames per channel in the chunk.
        blocks: One coded block per codebook, codebook-major.
    """

    index: int
    num_frames: int
    blocks: list[bytes]


# ----- writing ------------------------------------------------------------------------------------
def header_bytes(header: Header) -> bytes:
    """The serialized header, CRC included."""
    text = json.dumps(dataclasses.asdict(header), sort_keys=True, separators=(",", ":")).encode()
    head = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(text)) + text
    return head + _U32.pack(zlib.crc32(head))


def chunk_bytes(chunk: Chunk) -> bytes:
    """The serialized chunk, length and CRC included."""
    parts = [_CHUNK_HEAD.pack(chunk.index, chunk.num_frames, len(chunk.blocks))]
    for block in chunk.blocks:
        parts += [_U32.pack(len(block)), block]
    payload = b"".join(parts)
    return _U32.pack(len(payload)) + payload + _U32.pack(zlib.crc32(payload))


# ----- reading ------------------------------------------------------------------------------------
def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise FormatError(f"the file is truncated: it ends inside {what}")
    return data


def read_header(f: BinaryIO) -> Header:
    """Reads and checks the header at the start of ``f``.

    Raises:
        FormatError: On a bad magic, an unknown version, a CRC mismatch, a
            truncated header or a field out of range.
    """
    prefix = f.read(_PREFIX.size)
    if len(prefix) < 4 or prefix[:4] != MAGIC:
        raise FormatError(f"not an rvq-codec file: it does not start with {MAGIC.decode()!r}")
    if len(prefix) < _PREFIX.size:
        raise FormatError("the file is truncated: it ends inside the header")
    _, version, size = _PREFIX.unpack(prefix)
    if version != FORMAT_VERSION:
        raise FormatError(f"unsupported format version {version}; this rvq-codec reads version {FORMAT_VERSION}")
    if size > MAX_HEADER_BYTES:
        raise FormatError(f"header length {size} exceeds {MAX_HEADER_BYTES} bytes: the file is corrupt")
    text = _read_exact(f, size, "the header")
    (crc,) = _U32.unpack(_read_exact(f, _U32.size, "the header"))
    if crc != zlib.crc32(prefix + text):
        raise FormatError("header checksum mismatch: the file is corrupt")
    try:
        fields = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"header is not valid JSON ({e})") from None
    names = {f.name for f in dataclasses.fields(Header)}
    if not isinstance(fields, dict) or set(fields) != names:
        raise FormatError(f"header must hold exactly the fields {sorted(names)}")
    return Header(**fields)


def read_chunk(f: BinaryIO, header: Header, index: int) -> Chunk:
    """Reads chunk ``index`` and checks its length, CRC and layout.

    Raises:
        FormatError: Naming the chunk, on truncation, CRC mismatch or bad layout.
    """
    frames = header.chunk_frames(index)
    # Worst case per block: 24-bit ANS codes plus two spare words, or bit-packed codes.
    max_block = 8 + 3 * header.channels * frames + 4
    max_payload = _CHUNK_HEAD.size + header.n_q * (_U32.size + max_block)
    (size,) = _U32.unpack(_read_exact(f, _U32.size, f"chunk {index}"))
    if size > max_payload:
        raise FormatError(f"chunk {index}: length {size} exceeds the {max_payload} bytes it can hold")
    payload = _read_exact(f, size, f"chunk {index}")
    (crc,) = _U32.unpack(_read_exact(f, _U32.size, f"chunk {index}"))
    if crc != zlib.crc32(payload):
        raise FormatError(f"chunk {index}: checksum mismatch: the file is corrupt from this chunk on")
    return _parse_payload(payload, header, index, frames)


def _parse_payload(payload: bytes, header: Header, index: int, frames: int) -> Chunk:
    if len(payload) < _CHUNK_HEAD.size:
        raise FormatError(f"chunk {index}: payload too short")
    got_index, got_frames, n_q = _CHUNK_HEAD.unpack_from(payload)
    if (got_index, got_frames, n_q) != (index, frames, header.n_q):
        raise FormatError(
            f"chunk {index}: holds chunk {got_index} with {got_frames} frames and {n_q} codebooks, "
            f"expected chunk {index} with {frames} frames and {header.n_q} codebooks"
        )
    pos, blocks = _CHUNK_HEAD.size, []
    for k in range(n_q):
        if pos + _U32.size > len(payload):
            raise FormatError(f"chunk {index}: codebook {k} block is missing")
        (length,) = _U32.unpack_from(payload, pos)
        pos += _U32.size
        if pos + length > len(payload):
            raise FormatError(f"chunk {index}: codebook {k} block overruns the chunk")
        blocks.append(payload[pos : pos + length])
        pos += length
    if pos != len(payload):
        raise FormatError(f"chunk {index}: {len(payload) - pos} stray bytes after the last block")
    return Chunk(index=index, num_frames=frames, blocks=blocks)


def iter_chunks(f: BinaryIO, header: Header) -> Iterator[Chunk]:
    """Yields every chunk of ``f`` (after its header), then checks that the file ends.

    Raises:
        FormatError: On a bad chunk or bytes after the last chunk.
    """
    for index in range(header.num_chunks):
        yield read_chunk(f, header, index)
    if f.read(1):
        raise FormatError(f"the file has extra bytes after its last chunk ({header.num_chunks})")


def truncate_stream(header: Header, src: BinaryIO, dst: BinaryIO, n_q: int) -> Header:
    """Copies a file keeping only the first ``n_q`` codebooks of every chunk.

    Nothing is decoded: each chunk's leading blocks are copied as they are
    and its length and CRC rewritten. The result equals the file that
    compressing the same audio with ``n_q`` codebooks would write.

    Args:
        header: The header of ``src``, already read (by :func:`read_header`).
        src: The compressed file, positioned after its header.
        dst: Where to write the smaller file.
        n_q: Codebooks to keep.

    Returns:
        The header written.

    Raises:
        BandwidthError: If ``n_q`` is not in 1 .. the file's codebook count.
        FormatError: If ``src`` is corrupt.
    """
    if not 1 <= n_q <= header.n_q:
        raise BandwidthError(f"the file has {header.n_q} codebooks; cannot keep {n_q}")
    out = dataclasses.replace(header, n_q=n_q)
    dst.write(header_bytes(out))
    for chunk in iter_chunks(src, header):
        dst.write(chunk_bytes(Chunk(chunk.index, chunk.num_frames, chunk.blocks[:n_q])))
    return out
