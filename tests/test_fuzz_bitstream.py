"""Fuzzing the decoder with damaged files.

Valid files (stereo 44.1 kHz speech, entropy-coded and bit-packed) are
truncated, bit-flipped, spliced, replaced by random bytes, or given new
header fields or chunk contents with their checksums recomputed (so the
damage reaches the parsers behind the CRCs). Every case must end in a valid
decode or a :class:`~codec.errors.CodecError`, never another exception and
never a hang (each example has a deadline).

``RVQ_FUZZ_EXAMPLES`` sets the number of examples (300 by default, what CI
runs); see docs/format.md for a longer run.
"""

from __future__ import annotations

import io
import os
import struct
import tracemalloc
import zlib
from datetime import timedelta
from pathlib import Path

import pytest
import soundfile as sf
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from codec.errors import CodecError, FormatError
from codec.fileformat import bitstream, compress
from codec.fileformat.compress import LoadedModel
from codec.network.model import Codec

MAX_EXAMPLES = int(os.environ.get("RVQ_FUZZ_EXAMPLES", "300"))

_FIXED = struct.Struct("<4sBB8s8sIIHQIIHIB")
#: Integer fields of the fixed header part: (position in the struct, largest value).
_INT_FIELDS = {"version": (1, 255), "flags": (2, 255), "sample_rate": (5, 2**32 - 1),
               "model_sample_rate": (6, 2**32 - 1), "channels": (7, 2**16 - 1), "num_samples": (8, 2**64 - 1),
               "hop_length": (9, 2**32 - 1), "frames_per_chunk": (10, 2**32 - 1), "n_q": (11, 2**16 - 1),
               "codebook_size": (12, 2**32 - 1)}


def _header_size(data: bytes) -> int:
    return _FIXED.size + data[_FIXED.size - 1] + 4


def _chunk_spans(data: bytes) -> list[tuple[int, int]]:
    """(start of the length field, start of the payload, end of the payload) of each chunk of a valid file."""
    pos, spans = _header_size(data), []
    while pos < len(data):
        size, start = bitstream._parse_varint(data, pos, "length")
        spans.append((pos, start, start + size))
        pos = start + size + 4
    return spans


@st.composite
def _truncated(draw: st.DrawFn, data: bytes) -> bytes:
    return data[: draw(st.integers(0, len(data) - 1))]


@st.composite
def _bit_flipped(draw: st.DrawFn, data: bytes) -> bytes:
    out = bytearray(data)
    for position in draw(st.lists(st.integers(0, len(data) * 8 - 1), min_size=1, max_size=8, unique=True)):
        out[position // 8] ^= 1 << (position % 8)
    return bytes(out)


@st.composite
def _spliced(draw: st.DrawFn, data: bytes) -> bytes:
    start = draw(st.integers(0, len(data)))
    end = draw(st.integers(start, min(len(data), start + 64)))
    return data[:start] + draw(st.binary(max_size=64)) + data[end:]


@st.composite
def _random(draw: st.DrawFn, data: bytes) -> bytes:
    prefix = draw(st.sampled_from([b"", bitstream.MAGIC, data[:5], data[: _header_size(data)]]))
    return prefix + draw(st.binary(max_size=600))


@st.composite
def _new_header_field(draw: st.DrawFn, data: bytes) -> bytes:
    """A header field set to a random or nearby value (or a new model name), with the header CRC recomputed."""
    size = _header_size(data)
    values = list(_FIXED.unpack_from(data))
    name = data[_FIXED.size : size - 4]
    field = draw(st.sampled_from([*sorted(_INT_FIELDS), "model_id", "digest", "name"]))
    if field == "name":
        name = draw(st.binary(max_size=300))[:255]
    elif field in ("model_id", "digest"):
        values[3 if field == "model_id" else 4] = draw(st.binary(min_size=8, max_size=8))
    else:
        index, largest = _INT_FIELDS[field]
        nearby = st.integers(max(0, values[index] - 3), min(largest, values[index] + 3))
        values[index] = draw(st.one_of(nearby, st.integers(0, largest)))
    values[-1] = len(name)
    head = _FIXED.pack(*values) + name
    return head + struct.pack("<I", zlib.crc32(head)) + data[size:]


@st.composite
def _new_chunk_payload(draw: st.DrawFn, data: bytes) -> bytes:
    """Bytes of one chunk's payload overwritten, inserted or removed, with its length and CRC recomputed."""
    spans = _chunk_spans(data)
    index = draw(st.integers(0, len(spans) - 1))
    head_start, start, end = spans[index]
    payload = bytearray(data[start:end])
    at = draw(st.integers(0, len(payload)))
    payload[at : at + draw(st.integers(0, 8))] = draw(st.binary(min_size=1, max_size=8))
    chunk = bitstream._varint(len(payload)) + bytes(payload)
    crc = zlib.crc32(payload, zlib.crc32(chunk[: len(chunk) - len(payload)], zlib.crc32(struct.pack("<I", index))))
    return data[:head_start] + chunk + struct.pack("<I", crc) + data[end + 4 :]


_MUTATIONS = {
    "truncated": _truncated, "bit-flipped": _bit_flipped, "spliced": _spliced, "random": _random,
    "header-field": _new_header_field, "chunk-payload": _new_chunk_payload,
}


@pytest.fixture
def valid_files(fitted_codec: Codec, stereo_clip: Path, tmp_path: Path) -> tuple[LoadedModel, list[bytes]]:
    """The tiny model and two valid files of 1.3 s of real stereo speech (two chunks each)."""
    data, rate = sf.read(str(stereo_clip), dtype="float32")
    source = tmp_path / "source.wav"
    sf.write(str(source), data[: int(1.3 * rate)], rate)
    loaded = LoadedModel.from_codec(fitted_codec)
    files = []
    for entropy in (True, False):
        target = tmp_path / f"valid_{entropy}.rvq"
        kbps = fitted_codec.bandwidths_kbps[2]
        compress.compress(source, target, loaded, bandwidth_kbps=kbps, entropy_coding=entropy)
        files.append(target.read_bytes())
    return loaded, files


def _decode(data: bytes, loaded: LoadedModel, directory: Path) -> str:
    """Decodes ``data`` to a WAV file (and reads its info); returns how it ended."""
    path, out = directory / "case.rvq", directory / "case.wav"
    path.write_bytes(data)
    try:
        header = compress.decompress(path, out, loaded)
        info = compress.read_info(path)
    except CodecError as e:
        assert not out.exists()
        return type(e).__name__
    assert sf.info(str(out)).frames == header.num_samples and info.header == header
    out.unlink()
    return "decoded"


def test_valid_files_decode(valid_files: tuple[LoadedModel, list[bytes]], tmp_path: Path) -> None:
    loaded, files = valid_files
    for data in files:
        assert _decode(data, loaded, tmp_path) == "decoded"


# The fixtures are built once and only read by the examples.
@settings(max_examples=MAX_EXAMPLES, deadline=timedelta(seconds=10),
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(which=st.integers(0, 1), mutation=st.sampled_from(sorted(_MUTATIONS)), draw=st.data())
def test_damaged_files_decode_or_raise_codec_errors(
    valid_files: tuple[LoadedModel, list[bytes]], tmp_path: Path, which: int, mutation: str, draw: st.DataObject
) -> None:
    loaded, files = valid_files
    damaged = draw.draw(_MUTATIONS[mutation](files[which]), label="damaged file")
    event(f"{mutation}: {_decode(damaged, loaded, tmp_path)}")


# ----- crafted headers ------------------------------------------------------------------------------
def _crafted(channels: int, hop_length: int, frames_per_chunk: int, n_q: int, claimed_bytes: int) -> bytes:
    """A valid header (CRC included) and one chunk whose length field claims ``claimed_bytes``, then 8 bytes."""
    name = b"crafted"
    fixed = _FIXED.pack(bitstream.MAGIC, bitstream.FORMAT_VERSION, 0, bytes(8), bytes(8), 16000, 16000, channels,
                        1 << 40, hop_length, frames_per_chunk, n_q, 1024, len(name))
    head = fixed + name
    return head + struct.pack("<I", zlib.crc32(head)) + bitstream._varint(claimed_bytes) + bytes(8)


class _Stream(io.RawIOBase):
    """A pipe-like stream of ``data`` that cannot seek (as standard input)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:
        n = min(len(buffer), len(self.data) - self.pos)
        buffer[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


@pytest.mark.parametrize("source", ["file", "stream"])
def test_a_chunk_length_beyond_the_file_costs_no_memory(source: str, tmp_path: Path) -> None:
    largest = bitstream.MAX_CHUNK_CHANNEL_SAMPLES // bitstream.MAX_CHANNELS
    data = _crafted(bitstream.MAX_CHANNELS, 1, largest, 255, 255 * (3 * bitstream.MAX_CHUNK_CHANNEL_SAMPLES))
    assert len(data) < 100  # 400 MB claimed by a file of a few dozen bytes
    path = tmp_path / "crafted.rvq"
    path.write_bytes(data)
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match="truncated: it ends inside chunk 0"):
            if source == "file":
                compress.read_info(path)
            else:
                header = bitstream.read_header(stream := io.BufferedReader(_Stream(data)))
                list(bitstream.iter_chunks(stream, header))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_chunks_over_the_decoders_budget_are_refused(tmp_path: Path) -> None:
    frames = bitstream.MAX_CHUNK_CHANNEL_SAMPLES // (bitstream.MAX_CHANNELS * 320) + 1  # 8 channels of 205 x 320
    path = tmp_path / "crafted.rvq"
    path.write_bytes(_crafted(bitstream.MAX_CHANNELS, 320, frames, 8, 100))
    with pytest.raises(FormatError, match=f"exceed the decoder's budget of {bitstream.MAX_CHUNK_CHANNEL_SAMPLES}"):
        compress.read_info(path)
    path.write_bytes(_crafted(bitstream.MAX_CHANNELS, 320, frames - 1, 8, 100))
    with pytest.raises(FormatError, match="truncated"):  # within the budget: the header is read
        compress.read_info(path)
