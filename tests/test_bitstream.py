"""The container format: header and chunk layout, checksums, errors, truncation."""

from __future__ import annotations

import dataclasses
import io
import struct
import zlib
from collections.abc import Callable

import pytest

from codec import bitrate
from codec.errors import BandwidthError, FormatError
from codec.fileformat import bitstream
from codec.fileformat.bitstream import Chunk, Header
from codec.network.presets import codec_16khz_config, codec_tiny_config


def _header(**changes: object) -> Header:
    fields = {
        "model_id": "0123456789abcdef", "model_name": "codec-tiny", "sample_rate": 44100,
        "model_sample_rate": 16000, "channels": 2, "num_samples": 44100 * 3 + 5, "hop_length": 320,
        "frames_per_chunk": 50, "n_q": 3, "codebook_size": 1024, "entropy_coded": True,
        "entropy_tables": "fedcba9876543210",
    }
    return Header(**{**fields, **changes})


def _chunks(header: Header) -> list[Chunk]:
    """Chunks whose blocks are distinct byte strings (codebook k of chunk i: k + i + 1 bytes)."""
    return [
        Chunk(i, header.chunk_frames(i), [bytes([17 * k + i]) * (k + i + 1) for k in range(header.n_q)])
        for i in range(header.num_chunks)
    ]


def _file(header: Header) -> bytes:
    return bitstream.header_bytes(header) + b"".join(bitstream.chunk_bytes(c) for c in _chunks(header))


def _read_all(data: bytes) -> tuple[Header, list[Chunk]]:
    f = io.BytesIO(data)
    header = bitstream.read_header(f)
    return header, list(bitstream.iter_chunks(f, header))


def test_header_and_chunks_round_trip() -> None:
    header = _header()
    assert (header.num_frames, header.num_chunks, header.chunk_frames(3)) == (151, 4, 1)
    assert header.model_num_samples == 48002
    assert header.frame_rate_hz == 50 and header.duration_s == pytest.approx(3 + 5 / 44100)
    read, chunks = _read_all(_file(header))
    assert read == header
    assert chunks == _chunks(header)


def test_header_layout_is_fixed_fields_name_crc() -> None:
    data = bitstream.header_bytes(_header())
    fields = struct.unpack_from("<4sBB8s8sIIHQIIHIB", data)
    assert fields == (b"RVQC", bitstream.FORMAT_VERSION, 1, bytes.fromhex("0123456789abcdef"),
                      bytes.fromhex("fedcba9876543210"), 44100, 16000, 2, 44100 * 3 + 5, 320, 50, 3, 1024, 10)
    assert data[55:65] == b"codec-tiny"
    assert len(data) == 55 + 10 + 4
    assert struct.unpack_from("<I", data, 65)[0] == zlib.crc32(data[:65])
    packed = dataclasses.replace(_header(), entropy_coded=False, entropy_tables=None)
    assert bitstream.header_bytes(packed)[5:22] == bytes([0]) + bytes.fromhex("0123456789abcdef") + bytes(8)


def test_bandwidths_match_the_model_config() -> None:
    for config in (codec_16khz_config(), codec_tiny_config()):
        header = _header(model_sample_rate=config.sample_rate, hop_length=config.hop_length,
                         codebook_size=config.codebook_size, n_q=config.n_q)
        rates = [dataclasses.replace(header, n_q=n).bandwidth_kbps for n in range(1, config.n_q + 1)]
        assert tuple(rates) == config.bandwidths_kbps
        assert [bitstream.n_q_for_bandwidth(header, r) for r in rates] == list(range(1, config.n_q + 1))
    with pytest.raises(BandwidthError, match="choose one of: 0.5, 1, 1.5"):
        bitstream.n_q_for_bandwidth(_header(), 2.0)


def test_bitrate_arithmetic_is_codebooks_times_frames_times_log2_k() -> None:
    assert bitrate.bandwidth_kbps(8, 50.0, 1024) == 4.0  # speech-16khz at all codebooks
    assert bitrate.bandwidths_kbps(3, 75.0, 1024) == (0.75, 1.5, 2.25)  # EnCodec 24 kHz rates
    assert bitrate.codebooks_for_kbps((0.75, 1.5, 2.25), 1.5004) == 2
    assert bitrate.codebooks_for_kbps((0.75, 1.5, 2.25), 1.6) is None


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda d: b"RIFF" + d[4:], "not an rvq-codec file"),
        (lambda d: d[:4] + bytes([9]) + d[5:], "unsupported format version 9"),
        (lambda d: d[:30] + bytes([d[30] ^ 1]) + d[31:], "header checksum mismatch"),
        (lambda d: d[:60] + bytes([d[60] ^ 0x20]) + d[61:], "header checksum mismatch"),
        (lambda d: d[:3], "not an rvq-codec file"),
        (lambda d: d[:8], "truncated"),
        (lambda d: d[:60], "truncated"),
        (lambda d: d[:54] + bytes([255]) + d[55:], "truncated"),
    ],
    ids=["magic", "version", "crc-fixed", "crc-name", "short-magic", "short-fixed", "short-name", "long-name"],
)
def test_bad_headers_raise_format_error(corrupt: Callable[[bytes], bytes], message: str) -> None:
    with pytest.raises(FormatError, match=message):
        _read_all(corrupt(_file(_header())))


def _with_header_fields(data: bytes, name: bytes = b"codec-tiny", **changes: int) -> bytes:
    """``data`` with fields of its fixed header part changed (by position name) and the CRC recomputed."""
    names = ["magic", "version", "flags", "model_id", "digest", "sample_rate", "model_sample_rate", "channels",
             "num_samples", "hop_length", "frames_per_chunk", "n_q", "codebook_size", "name_length"]
    values = dict(zip(names, struct.unpack_from("<4sBB8s8sIIHQIIHIB", data)))
    old_size = 55 + values["name_length"] + 4
    values.update(changes, name_length=len(name))
    head = struct.pack("<4sBB8s8sIIHQIIHIB", *values.values()) + name
    return head + struct.pack("<I", zlib.crc32(head)) + data[old_size:]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"channels": 0}, "channels = 0 is out of range"),
        ({"channels": 9}, "channels = 9 is out of range 1..8"),
        ({"frames_per_chunk": 1000}, "chunks of 1000 frames of 320 samples exceed 262144 samples"),
        ({"n_q": 0}, "n_q = 0 is out of range"),
        ({"codebook_size": 1 << 17}, "codebook_size = 131072 is out of range"),
        ({"sample_rate": 0}, "sample_rate = 0"),
        ({"flags": 2}, "flags 0x2 are not valid"),
        ({"flags": 0}, "flags 0x0 are not valid"),
        ({"name": b"\xff\xfe"}, "not UTF-8"),
        ({"name": b""}, "1 to 255 bytes"),
        ({"num_samples": 1 << 60}, "num_samples"),
        ({"frames_per_chunk": 1, "num_samples": 1 << 48, "hop_length": 1}, "more than the format allows"),
    ],
    ids=["zero-channels", "nine-channels", "long-chunks", "zero-n_q", "huge-codebook", "zero-rate", "unknown-flag", "digest-without-flag",
         "name-bytes", "empty-name", "huge-length", "too-many-chunks"],
)
def test_header_fields_are_checked(changes: dict[str, object], message: str) -> None:
    with pytest.raises(FormatError, match=message):
        _read_all(_with_header_fields(_file(_header()), **changes))


def test_varints_round_trip_and_stay_short() -> None:
    for value in (0, 1, 127, 128, 300, 16383, 16384, 2**32 - 1):
        data = bitstream._varint(value)
        assert len(data) == max(1, -(-value.bit_length() // 7))
        assert bitstream._parse_varint(data + b"\x55", 0, "x") == (value, len(data))
    with pytest.raises(FormatError, match="longer than 5 bytes"):
        bitstream._parse_varint(b"\xff" * 6, 0, "x")
    with pytest.raises(FormatError, match="cut short"):
        bitstream._parse_varint(b"\x80", 0, "x")
    with pytest.raises(FormatError, match="not in its shortest form"):
        bitstream._parse_varint(b"\x85\x00", 0, "x")


def _chunk_offsets(data: bytes, header: Header) -> list[int]:
    pos, offsets = len(bitstream.header_bytes(header)), []
    for _ in range(header.num_chunks):
        offsets.append(pos)
        size, start = bitstream._parse_varint(data, pos, "length")
        pos = start + size + 4
    return offsets


def test_chunk_errors_name_the_chunk() -> None:
    header = _header()
    data = _file(header)
    offsets = _chunk_offsets(data, header)
    flipped = bytearray(data)
    flipped[offsets[2] + 12] ^= 0x40
    with pytest.raises(FormatError, match="chunk 2: checksum mismatch"):
        _read_all(bytes(flipped))
    with pytest.raises(FormatError, match="truncated: it ends inside chunk 3"):
        _read_all(data[:-3])
    with pytest.raises(FormatError, match="truncated: it ends inside chunk 1"):
        _read_all(data[: offsets[1]])
    with pytest.raises(FormatError, match="extra bytes after its last chunk"):
        _read_all(data + b"\0")
    swapped = data[: offsets[1]] + data[offsets[2] : offsets[3]] + data[offsets[1] : offsets[2]] + data[offsets[3] :]
    with pytest.raises(FormatError, match="chunk 1: checksum mismatch: .* out of order"):
        _read_all(swapped)
    long_length = bytearray(data)
    long_length[offsets[0] : offsets[0] + 1] = b"\xff\xff\xff\xff\xff\x01"
    with pytest.raises(FormatError, match="chunk 0: its length field is longer than 5 bytes"):
        _read_all(bytes(long_length))
    huge = data[: offsets[0]] + bitstream._varint(10**6) + data[offsets[0] + 1 :]
    with pytest.raises(FormatError, match="chunk 0: length 1000000 exceeds"):
        _read_all(huge)


def test_chunk_layout_is_lengths_then_codebook_major_blocks() -> None:
    blocks = [b"ab", b"", b"c" * 200]
    data = bitstream.chunk_bytes(Chunk(7, 50, blocks))
    payload = bytes([2, 0]) + b"ab" + b"c" * 200  # lengths of all blocks but the last, then the blocks
    assert data == bytes([204, 1]) + payload + data[-4:]  # varint 204 = 0xCC 0x01
    crc = zlib.crc32(payload, zlib.crc32(bytes([204, 1]), zlib.crc32(struct.pack("<I", 7))))
    assert struct.unpack_from("<I", data, len(data) - 4)[0] == crc
    header = _header(num_samples=44100 * 9)  # 10 chunks of 50 frames, 3 codebooks
    assert bitstream.read_chunk(io.BytesIO(data), header, 7) == Chunk(7, 50, blocks)
    assert bitstream._split_blocks(payload, 3, 0) == blocks
    with pytest.raises(FormatError, match="overrun"):
        bitstream._split_blocks(bytes([100, 0]) + b"ab", 3, 0)


@pytest.mark.parametrize("n_q", [1, 2, 3])
def test_truncate_keeps_the_first_codebooks_of_every_chunk(n_q: int) -> None:
    header = _header()
    out = io.BytesIO()
    src = io.BytesIO(_file(header))
    written = bitstream.truncate_stream(bitstream.read_header(src), src, out, n_q)
    assert written == dataclasses.replace(header, n_q=n_q)
    read, chunks = _read_all(out.getvalue())
    assert read == written
    assert [c.blocks for c in chunks] == [c.blocks[:n_q] for c in _chunks(header)]


def test_truncate_refuses_more_codebooks_than_the_file_has() -> None:
    src = io.BytesIO(_file(_header()))
    with pytest.raises(BandwidthError, match="has 3 codebooks; cannot keep 4"):
        bitstream.truncate_stream(bitstream.read_header(src), src, io.BytesIO(), 4)
