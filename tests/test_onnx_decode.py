"""Decompression on the cached onnxruntime decoder (codec.fileformat.onnx_decode), against PyTorch's, on real speech."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import data_wavs, long_speech

from codec import audio
from codec.cli import main
from codec.export import snr_db
from codec.fileformat import compress as compress_module
from codec.fileformat import onnx_decode
from codec.fileformat.bitstream import read_header
from codec.fileformat.compress import compress, decompress, load_model
from codec.fileformat.entropy import TABLES_FILE
from codec.fileformat.onnx_decode import CACHE_ENV, GRAPH_FILE, INFO_FILE, OnnxDecoder, graph_folder

#: The two decodings stay at least this far apart in SNR on speech (the harmonic phase drift).
MIN_SNR_DB = 60.0


@pytest.fixture(scope="module")
def loaded() -> compress_module.LoadedModel:
    return load_model("speech-16khz")


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory, loaded: compress_module.LoadedModel) -> Path:
    """12 s of speech (two whole decoder calls and a partial one) compressed at 2 kbps by the bundled model."""
    folder = tmp_path_factory.mktemp("packed")
    path = folder / "speech.rvq"
    compress(long_speech(folder, 12.0), path, loaded, bandwidth_kbps=2.0)
    return path


@pytest.fixture(scope="module")
def filled_cache(tmp_path_factory: pytest.TempPathFactory, packed: Path) -> tuple[Path, Path]:
    """A cache filled by a PyTorch decompress of :func:`packed`, and that decompress's output."""
    cache = tmp_path_factory.mktemp("cache")
    out = cache.parent / "pytorch.wav"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(cache))
        decompress(packed, out)
    return cache, out


def _no_model(*args: object) -> None:
    raise AssertionError("the model was loaded: the file was not decoded on the cached graph")


def test_the_cache_decodes_what_pytorch_decodes(
    packed: Path, filled_cache: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cache, pytorch_out = filled_cache
    with packed.open("rb") as f:
        header = read_header(f)
    monkeypatch.setenv(CACHE_ENV, str(cache))
    folder = graph_folder(header.model_id, header.n_q)
    assert folder is not None and folder.parent.parent == cache
    assert sorted(p.name for p in folder.iterdir()) == sorted([GRAPH_FILE, INFO_FILE, TABLES_FILE])
    monkeypatch.setattr(compress_module, "_model_for_file", _no_model)
    out = tmp_path / "onnx.wav"
    decompress(packed, out)
    reference, decoded = audio.load(pytorch_out)[0], audio.load(out)[0]
    assert decoded.shape == reference.shape == (1, header.num_samples)
    assert snr_db(reference, decoded) >= MIN_SNR_DB
    # Without the cache, PyTorch decodes (and the check above can fail).
    monkeypatch.setenv(CACHE_ENV, "")
    with pytest.raises(AssertionError, match="the model was loaded"):
        decompress(packed, tmp_path / "again.wav")


def test_held_codes_decode_the_same_in_any_pieces(packed: Path, filled_cache: tuple[Path, Path],
                                                   loaded: compress_module.LoadedModel) -> None:
    """:meth:`OnnxDecoder.feed` holds what falls short of a whole call: any split of the codes gives the same audio."""
    cache = filled_cache[0]
    header, codes = compress_module.read_codes(packed, loaded)
    folder = next((cache / header.model_id).iterdir())
    whole = OnnxDecoder(folder, channels=1)
    one_go = np.concatenate([whole.feed(codes.numpy()), whole.flush()], axis=-1)
    pieces = OnnxDecoder(folder, channels=1)
    parts = [pieces.feed(codes[..., i : i + 70].numpy()) for i in range(0, codes.shape[-1], 70)]
    assert np.array_equal(np.concatenate([*parts, pieces.flush()], axis=-1), one_go)
    assert one_go.shape == (1, codes.shape[-1] * header.hop_length)


def test_stereo_44khz_file_through_the_cache(tmp_path: Path, loaded: compress_module.LoadedModel,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Channels decode one at a time with their own past, then PyTorch's resampler restores the rate."""
    clip = data_wavs(channels=2)[0]
    packed = tmp_path / "stereo.rvq"
    compress(clip, packed, loaded, bandwidth_kbps=2.0)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    decompress(packed, tmp_path / "pytorch.wav")
    monkeypatch.setattr(compress_module, "_model_for_file", _no_model)
    decompress(packed, tmp_path / "onnx.wav")
    reference, rate = audio.load(tmp_path / "pytorch.wav")
    decoded, onnx_rate = audio.load(tmp_path / "onnx.wav")
    assert (rate, onnx_rate) == (44100, 44100) and decoded.shape == reference.shape and reference.shape[0] == 2
    for channel in range(2):
        assert snr_db(reference[channel], decoded[channel]) >= MIN_SNR_DB


@pytest.mark.parametrize("damage", ["graph", "header"])
def test_a_damaged_cache_is_removed_and_written_again(
    damage: str, packed: Path, filled_cache: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(filled_cache[0], cache)
    folder = next(next(cache.iterdir()).iterdir())
    if damage == "graph":
        (folder / GRAPH_FILE).write_bytes(b"not an onnx graph")
    else:
        info = (folder / INFO_FILE).read_text()
        (folder / INFO_FILE).write_text(info.replace('"n_q": 4', '"n_q": 8'))
    monkeypatch.setenv(CACHE_ENV, str(cache))
    with pytest.warns(UserWarning, match="removed the damaged cached decoder"):
        decompress(packed, tmp_path / "x.wav")
    assert torch.equal(audio.load(tmp_path / "x.wav")[0], audio.load(filled_cache[1])[0])  # PyTorch's own output
    assert folder.is_dir() and OnnxDecoder(folder, channels=1).info.n_q == 4  # written again
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        monkeypatch.setattr(compress_module, "_model_for_file", _no_model)
        decompress(packed, tmp_path / "y.wav")


def test_the_command_prints_a_damaged_cache_as_one_warning_line(
    packed: Path, filled_cache: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(filled_cache[0], cache)
    (next(next(cache.iterdir()).iterdir()) / GRAPH_FILE).write_bytes(b"")
    monkeypatch.setenv(CACHE_ENV, str(cache))
    assert main(["decompress", str(packed), str(tmp_path / "x.wav"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("codec decompress: warning: removed the damaged cached decoder") and err.count("\n") == 1


def test_cache_off_or_unwritable_leaves_decoding_on_pytorch(
    packed: Path, filled_cache: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(CACHE_ENV, "")
    assert onnx_decode.cache_root() is None
    decompress(packed, tmp_path / "off.wav")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(CACHE_ENV, str(blocker / "cache"))
    with pytest.warns(UserWarning, match="could not cache the onnxruntime decoder"):
        decompress(packed, tmp_path / "unwritable.wav")
    for name in ("off.wav", "unwritable.wav"):
        assert torch.equal(audio.load(tmp_path / name)[0], audio.load(filled_cache[1])[0])


def test_a_failed_export_leaves_nothing_behind(
    packed: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import codec.frame_step

    def fail(*args: object) -> None:
        raise RuntimeError("the exporter failed")

    cache = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(cache))
    monkeypatch.setattr(codec.frame_step, "export_decoder_chunk", fail)
    with pytest.warns(UserWarning, match="the exporter failed"):
        decompress(packed, tmp_path / "x.wav")
    assert (tmp_path / "x.wav").is_file()
    assert [p for p in cache.rglob("*") if p.is_file() or p.name.startswith(".tmp")] == []


def test_a_model_given_decodes_with_pytorch_and_caches_nothing(
    packed: Path, loaded: compress_module.LoadedModel, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(cache))
    decompress(packed, tmp_path / "x.wav", loaded)
    assert not cache.exists()
