"""What users run is the fast path: chunked inference with the bundled model, and commands that need no torch."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import data_wavs, drift_atol

from codec import audio
from codec.cli import COMMAND_MODULES, COMMANDS
from codec.fileformat.compress import compress, encode_chunks
from codec.fileformat.onnx_decode import CACHE_ENV
from codec.network.model import Codec

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bundled() -> Codec:
    return Codec.from_pretrained("speech-16khz")


def test_compressed_codes_do_not_depend_on_the_chunk_size(bundled: Codec) -> None:
    """The chunk loop of ``codec compress`` gives the offline codes whatever the chunk size (1 frame to 1 s) and
    however many chunks each call encodes."""
    wav, _ = audio.load(data_wavs(channels=1)[2], target_rate=16000, mono=True)  # [1, T]
    wav = wav[:, : int(2.3 * 16000) + 77]  # a ragged end
    offline = bundled.encode(wav[None]).codes[0]  # [n_q, F]
    blocks = [wav[:, i : i + 4000] for i in range(0, wav.shape[-1], 4000)]  # [1, n] each
    for chunk_frames, group in ((1, 1), (7, 1), (50, 1), (7, 3), (50, 2)):
        chunks = list(encode_chunks(bundled, iter(blocks), 1, 8, chunk_frames, group))
        assert [c.shape[-1] for c in chunks[:-1]] == [chunk_frames] * (len(chunks) - 1)
        codes = torch.cat([torch.from_numpy(c[0]) for c in chunks], -1)
        assert torch.equal(codes, offline), f"chunks of {chunk_frames} frames, {group} per call"


def test_one_frame_streaming_equals_offline_with_the_bundled_model(bundled: Codec) -> None:
    """Frame by frame (the latency-critical case), the bundled model's codes and audio are the offline ones."""
    wav, _ = audio.load(data_wavs(channels=1)[0], target_rate=16000, mono=True)
    wav = wav[None, :, : 40 * bundled.hop_length]  # [1, 1, T]
    encoded = bundled.encode(wav)
    decoded = bundled.decode(encoded.codes)
    with bundled.streaming(1):
        frames = wav.split(bundled.hop_length, dim=-1)
        codes = [bundled.encode(frame).codes for frame in frames]
        audio_frames = [bundled.decode(c) for c in codes]
    assert torch.equal(torch.cat(codes, -1), encoded.codes)
    assert (torch.cat(audio_frames, -1) - decoded).abs().max() <= drift_atol(bundled, 1e-5)


def test_the_command_table_lists_what_the_modules_register() -> None:
    """``codec --help`` lists :data:`COMMANDS` without importing the modules: names and help must match theirs."""
    registered = {}
    for module in COMMAND_MODULES:
        subparsers = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module).register(subparsers)
        registered.update({a.dest: (module, a.help) for a in subparsers._choices_actions})
    assert registered == COMMANDS


def _imports_torch(*args: str, cache: Path | None = None) -> tuple[int, bool, str]:
    """Runs ``codec ARGS`` in a fresh interpreter (decoder cache in ``cache``, else off); its exit status, whether
    torch got imported, its stdout."""
    script = ("import sys\nfrom codec.cli import main\ntry:\n    code = main(sys.argv[1:])\nexcept SystemExit as e:\n"
              "    code = e.code\nprint('torch' in sys.modules)\nsys.exit(code)")
    result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120,
                            cwd=REPO, check=False,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", CACHE_ENV: str(cache or "")})
    *lines, flag = result.stdout.strip().splitlines()
    return result.returncode, flag == "True", "\n".join(lines)


def test_info_truncate_and_help_do_not_import_torch(fitted_codec: Codec, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    fitted_codec.save_pretrained(model_dir)
    packed = tmp_path / "x.rvq"
    compress(data_wavs(channels=1)[0], packed, str(model_dir))
    code, torch_imported, out = _imports_torch("info", str(packed))
    assert code == 0 and "codebooks:" in out and not torch_imported
    kbps = f"{fitted_codec.bandwidths_kbps[0]:g}"
    assert _imports_torch("truncate", str(packed), str(tmp_path / "y.rvq"), "--kbps", kbps)[:2] == (0, False)
    code, torch_imported, out = _imports_torch("--help")
    assert code == 0 and not torch_imported and all(name in out for name in COMMANDS)
    # A command that runs the model does import it (the check above can fail).
    assert _imports_torch("decompress", str(packed), str(tmp_path / "x.wav"), "--model", str(model_dir),
                          "--quiet")[:2] == (0, True)


def test_decompress_on_the_cached_decoder_does_not_import_torch(bundled: Codec, tmp_path: Path) -> None:
    """The first decompress of a bundled model's file imports torch and caches the decoder; the next runs on
    onnxruntime alone and writes the same samples up to the harmonic phase drift (codec.fileformat.onnx_decode)."""
    packed, cache = tmp_path / "x.rvq", tmp_path / "cache"
    compress(data_wavs(channels=1)[0], packed, "speech-16khz", bandwidth_kbps=2.0)
    first, second = tmp_path / "first.wav", tmp_path / "second.wav"
    assert _imports_torch("decompress", str(packed), str(first), "--quiet", cache=cache)[:2] == (0, True)
    assert _imports_torch("decompress", str(packed), str(second), "--quiet", cache=cache)[:2] == (0, False)
    a, b = audio.load(first)[0], audio.load(second)[0]
    assert a.shape == b.shape and (a - b).abs().max() <= drift_atol(bundled, 1e-5)


