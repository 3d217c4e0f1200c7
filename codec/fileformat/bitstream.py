"""The compressed file format: header, chunks, checksums (docs/format.md, version 1).

    file    = header chunk*
    header  = fixed fields (struct, 55 bytes) | model name | u32 CRC32(all before)
    chunk   = varint m | payload (m bytes) | u32 CRC32(u32 index | varint m | payload)
    payload = varint length of blocks 0 .. n_q-2 | blocks 0 .. n_q-1 (the last takes the rest)

Integers are little-endian; a varint is unsigned LEB128. A chunk holds
``frames_per_chunk`` frames (the last one fewer); its blocks are
codebook-major, block ``k`` holding the codes of codebook ``k`` for every
channel (channel-major, then time), entropy-coded or bit-packed. Dropping
codebooks (:func:`truncate_stream`) drops the last blocks of each chunk and
touches nothing else. Nothing in a file is executable: the header is a fixed
binary layout whose every field is checked.
"""

from __future__ import annotations

import dataclasses
import math
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from codec import bitrate
from codec.errors import BandwidthError, FormatError

MAGIC = b"RVQC"
FORMAT_VERSION = 1
#: magic, version, flags, model id, tables digest, sample rate, model rate, channels, samples,
#: hop, frames per chunk, codebooks, codebook size, name length.
_FIXED = struct.Struct("<4sBB8s8sIIHQIIHIB")
_U32 = struct.Struct("<I")
_FLAG_ENTROPY = 1
_DIGEST_BYTES = 8
#: Most channels a file holds (as in FLAC): decoding work per chunk is bounded by the header.
MAX_CHANNELS = 8
#: Highest sample rate (original and model) a file records.
MAX_SAMPLE_RATE = 1 << 20
#: Most model-rate samples per channel in one chunk (16.4 s at 16 kHz), which bounds decoding memory.
MAX_CHUNK_SAMPLES = 1 << 18
#: Most model-rate samples in one chunk over all its channels: what one decoding step holds in
#: memory. One-second chunks of 8 channels at 48 kHz (EnCodec's and DAC's highest model rates) take
#: 384,000; decoding 2^19 samples with the bundled model peaks near 1 GB.
MAX_CHUNK_CHANNEL_SAMPLES = 1 << 19
#: Largest read made at once; longer fields are read piece by piece, so memory follows the bytes
#: actually present, whatever length a damaged field claims.
_READ_PIECE_BYTES = 1 << 20
#: Inclusive upper bounds of the numeric header fields (all must be at least 1).
_LIMITS = {
    "sample_rate": MAX_SAMPLE_RATE, "model_sample_rate": MAX_SAMPLE_RATE, "channels": MAX_CHANNELS, "num_samples": 1 << 48,
    "hop_length": MAX_CHUNK_SAMPLES, "frames_per_chunk": MAX_CHUNK_SAMPLES, "n_q": 255, "codebook_size": 1 << 16,
}
_MAX_VARINT_BYTES = 5  # enough for 32-bit values


@dataclass(frozen=True)
class Header:
    """What a decoder needs to know before the first chunk.

    Attributes:
        model_id: :attr:`codec.network.model.Codec.model_id` of the writing model (16 hex digits).
        model_name: Bundled model name, or the config name of the writing model.
        sample_rate: Rate of the original audio in Hz (restored on decoding).
        model_sample_rate: Rate the model works at in Hz.
        channels: Channels of the original audio, coded as independent batch items.
        num_samples: Samples per channel of the original audio.
        hop_length: Model-rate samples per frame (frame rate = model_sample_rate / hop_length).
        frames_per_chunk: Frames in every chunk but the last.
        n_q: Codebooks per frame in the file.
        codebook_size: Entries per codebook.
        entropy_coded: Whether blocks are ANS-coded (else bit-packed).
        entropy_tables: Digest of the entropy tables, 16 hex digits (``None`` when bit-packed).
    """

    model_id: str
    model_name: str
    sample_rate: int
    model_sample_rate: int
    channels: int
    num_samples: int
    hop_length: int
    frames_per_chunk: int
    n_q: int
    codebook_size: int
    entropy_coded: bool
    entropy_tables: str | None

    def __post_init__(self) -> None:
        for key, limit in _LIMITS.items():
            value = getattr(self, key)
            if type(value) is not int or not 1 <= value <= limit:
                raise FormatError(f"header field {key} = {value!r} is out of range 1..{limit}")
        if not _is_hex(self.model_id):
            raise FormatError(f"model id {self.model_id!r} is not {2 * _DIGEST_BYTES} hex digits")
        if not isinstance(self.model_name, str) or not 1 <= len(self.model_name.encode()) <= 255:
            raise FormatError("the model name must be 1 to 255 bytes of UTF-8")
        if not isinstance(self.entropy_coded, bool):
            raise FormatError("entropy_coded must be True or False")
        if not (_is_hex(self.entropy_tables) if self.entropy_coded else self.entropy_tables is None):
            raise FormatError("entropy_tables must be a 16-hex-digit digest when entropy-coded, else None")
        if self.frames_per_chunk * self.hop_length > MAX_CHUNK_SAMPLES:
            raise FormatError(
                f"chunks of {self.frames_per_chunk} frames of {self.hop_length} samples exceed "
                f"{MAX_CHUNK_SAMPLES} samples"
            )
        if self.channels * self.frames_per_chunk * self.hop_length > MAX_CHUNK_CHANNEL_SAMPLES:
            raise FormatError(
                f"chunks of {self.channels} channels x {self.frames_per_chunk} frames x {self.hop_length} samples "
                f"exceed the decoder's budget of {MAX_CHUNK_CHANNEL_SAMPLES} samples"
            )
        if self.num_chunks >= 1 << 32:
            raise FormatError(f"{self.num_chunks} chunks are more than the format allows")

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
        """Samples per channel at the model rate (the resampled length, an exact integer ceil)."""
        return -(-self.num_samples * self.model_sample_rate // self.sample_rate)

    @property
    def num_frames(self) -> int:
        """Frames per channel: the model-rate samples padded to whole frames."""
        return -(-self.model_num_samples // self.hop_length)

    @property
    def num_chunks(self) -> int:
        """Chunks in the file."""
        return -(-self.num_frames // self.frames_per_chunk)

    @property
    def bandwidth_kbps(self) -> float:
        """Nominal bitrate per channel (before entropy coding)."""
        return bitrate.bandwidth_kbps(self.n_q, self.frame_rate_hz, self.codebook_size)

    def chunk_frames(self, index: int) -> int:
        """Frames in chunk ``index``."""
        return min(self.frames_per_chunk, self.num_frames - index * self.frames_per_chunk)


def _is_hex(value: object) -> bool:
    return isinstance(value, str) and len(value) == 2 * _DIGEST_BYTES and all(c in "0123456789abcdef" for c in value)


def n_q_for_bandwidth(header: Header, kbps: float) -> int:
    """Codebooks of the file's model that give ``kbps`` (at most the file's own count).

    Raises:
        BandwidthError: If no count up to ``header.n_q`` gives ``kbps``.
    """
    rates = bitrate.bandwidths_kbps(header.n_q, header.frame_rate_hz, header.codebook_size)
    n_q = bitrate.codebooks_for_kbps(rates, kbps)
    if n_q is not None:
        return n_q
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


# ----- varints ------------------------------------------------------------------------------------
def _varint(value: int) -> bytes:
    """Unsigned LEB128: 7 bits per byte, low bits first, high bit set on all but the last byte."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _parse_varint(data: bytes, pos: int, what: str) -> tuple[int, int]:
    """Reads a varint of ``data`` at ``pos``; returns ``(value, next position)``.

    Only the shortest form is accepted, so every file has one serialization.
    """
    value = 0
    for shift in range(0, 7 * _MAX_VARINT_BYTES, 7):
        if pos >= len(data):
            raise FormatError(f"{what} is cut short")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if byte == 0 and shift:
                raise FormatError(f"{what} is not in its shortest form")
            return value, pos
    raise FormatError(f"{what} is longer than {_MAX_VARINT_BYTES} bytes")


# ----- writing ------------------------------------------------------------------------------------
def header_bytes(header: Header) -> bytes:
    """The serialized header, CRC included."""
    name = header.model_name.encode()
    digest = bytes.fromhex(header.entropy_tables) if header.entropy_coded else bytes(_DIGEST_BYTES)
    fixed = _FIXED.pack(
        MAGIC, FORMAT_VERSION, _FLAG_ENTROPY if header.entropy_coded else 0, bytes.fromhex(header.model_id), digest,
        header.sample_rate, header.model_sample_rate, header.channels, header.num_samples, header.hop_length,
        header.frames_per_chunk, header.n_q, header.codebook_size, len(name),
    )
    return fixed + name + _U32.pack(zlib.crc32(fixed + name))


def chunk_bytes(chunk: Chunk) -> bytes:
    """The serialized chunk: length, payload, CRC (which also covers the chunk's index)."""
    lengths = b"".join(_varint(len(block)) for block in chunk.blocks[:-1])
    payload = lengths + b"".join(chunk.blocks)
    head = _varint(len(payload))
    return head + payload + _U32.pack(_chunk_crc(chunk.index, head, payload))


def _chunk_crc(index: int, head: bytes, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(head, zlib.crc32(_U32.pack(index))))


# ----- reading ------------------------------------------------------------------------------------
def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    """Reads ``n`` bytes, or raises :class:`FormatError` naming ``what`` if the file ends first.

    A long read is checked against the bytes left in a seekable file before
    anything is read, and made in pieces, so a length field claiming more than
    the file holds costs no memory.
    """
    if n > _READ_PIECE_BYTES and _bytes_left(f) < n:
        raise FormatError(f"the file is truncated: it ends inside {what}")
    pieces, left = [], n
    while left:
        piece = f.read(min(left, _READ_PIECE_BYTES))
        if not piece:
            raise FormatError(f"the file is truncated: it ends inside {what}")
        pieces.append(piece)
        left -= len(piece)
    return b"".join(pieces)


def _bytes_left(f: BinaryIO) -> float:
    """Bytes between the position of ``f`` and its end (infinite for a stream that cannot seek)."""
    try:
        if not f.seekable():
            return math.inf
        position = f.tell()
        end = f.seek(0, 2)
        f.seek(position)
    except (OSError, ValueError):
        return math.inf
    return end - position


def read_header(f: BinaryIO) -> Header:
    """Reads and checks the header at the start of ``f``.

    Raises:
        FormatError: On a bad magic, an unknown version, a CRC mismatch, a
            truncated header or a field out of range.
    """
    start = f.read(5)
    if len(start) < 4 or start[:4] != MAGIC:
        raise FormatError(f"not an rvq-codec file: it does not start with {MAGIC.decode()!r}")
    if len(start) == 5 and start[4] != FORMAT_VERSION:
        raise FormatError(f"unsupported format version {start[4]}; this rvq-codec reads version {FORMAT_VERSION}")
    fixed = start + _read_exact(f, _FIXED.size - len(start), "the header")
    (_, _, flags, model_id, digest, *numbers, name_length) = _FIXED.unpack(fixed)
    name = _read_exact(f, name_length, "the header")
    (crc,) = _U32.unpack(_read_exact(f, _U32.size, "the header"))
    if crc != zlib.crc32(fixed + name):
        raise FormatError("header checksum mismatch: the file is corrupt")
    if flags & ~_FLAG_ENTROPY or (not flags and any(digest)):
        raise FormatError(f"header flags {flags:#x} are not valid in format version {FORMAT_VERSION}")
    try:
        model_name = name.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("the model name in the header is not UTF-8") from None
    keys = ("sample_rate", "model_sample_rate", "channels", "num_samples", "hop_length", "frames_per_chunk",
            "n_q", "codebook_size")
    entropy = bool(flags & _FLAG_ENTROPY)
    return Header(
        model_id=model_id.hex(), model_name=model_name, entropy_coded=entropy,
        entropy_tables=digest.hex() if entropy else None, **dict(zip(keys, numbers)),
    )


def max_block_bytes(header: Header, frames: int) -> int:
    """Bytes a block of ``frames`` frames can take: 24-bit ANS codes plus the coder's state, or packed codes."""
    return 3 * header.channels * frames + 8


def read_chunk(f: BinaryIO, header: Header, index: int) -> Chunk:
    """Reads chunk ``index`` and checks its length, CRC and layout.

    Raises:
        FormatError: Naming the chunk, on truncation, CRC mismatch or bad layout.
    """
    frames = header.chunk_frames(index)
    head = bytearray()
    while not head or head[-1] & 0x80:
        if len(head) == _MAX_VARINT_BYTES:
            raise FormatError(f"chunk {index}: its length field is longer than {_MAX_VARINT_BYTES} bytes")
        head += _read_exact(f, 1, f"chunk {index}")
    size, _ = _parse_varint(bytes(head), 0, f"chunk {index} length")
    limit = header.n_q * (_MAX_VARINT_BYTES + max_block_bytes(header, frames))
    if size > limit:
        raise FormatError(f"chunk {index}: length {size} exceeds the {limit} bytes it can hold")
    payload = _read_exact(f, size, f"chunk {index}")
    (crc,) = _U32.unpack(_read_exact(f, _U32.size, f"chunk {index}"))
    if crc != _chunk_crc(index, bytes(head), payload):
        raise FormatError(f"chunk {index}: checksum mismatch: the file is corrupt (or its chunks out of order)")
    return Chunk(index=index, num_frames=frames, blocks=_split_blocks(payload, header.n_q, index))


def _split_blocks(payload: bytes, n_q: int, index: int) -> list[bytes]:
    pos, lengths = 0, []
    for k in range(n_q - 1):
        length, pos = _parse_varint(payload, pos, f"chunk {index}: the length of codebook {k}")
        lengths.append(length)
    if pos + sum(lengths) > len(payload):
        raise FormatError(f"chunk {index}: its codebook blocks overrun the chunk")
    blocks = []
    for length in lengths:
        blocks.append(payload[pos : pos + length])
        pos += length
    return [*blocks, payload[pos:]]


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
    and its lengths and CRC rewritten. The result equals the file that
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
    dst.writelines(chunk_bytes(Chunk(c.index, c.num_frames, c.blocks[:n_q])) for c in iter_chunks(src, header))
    return out
