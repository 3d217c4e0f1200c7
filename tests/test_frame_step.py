"""The exported one-frame streaming step: frame by frame it gives offline codes and audio, on both decoders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import drift_atol

from codec.cli import main
from codec.errors import CodecError, InputError
from codec.export import prepare_for_export
from codec.frame_step import FrameStep, StepRunner, check_step_parity, export_step
from codec.network.model import Codec

Speech = Callable[..., torch.Tensor]
N_Q = 3


@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
def test_streamed_frames_give_the_offline_codes_and_audio(
    any_decoder_codec: Codec, tmp_path: Path, suffix: str, speech: Speech
) -> None:
    model = any_decoder_codec
    kbps = model.bandwidths_kbps[N_Q - 1]
    path = export_step(model, tmp_path / f"step{suffix}", kbps)
    assert not model.is_streaming  # the model is left as it was
    wav = speech(model.sample_rate, index=1, seconds=1.0)[..., :-3]  # not whole frames: padded like encode
    parity = check_step_parity(model, path, wav, kbps)
    assert parity.n_codes == N_Q * -(-wav.shape[-1] // model.hop_length)
    assert parity.codes_equal > 0.99 and parity.not_near_ties == 0
    assert parity.max_abs_diff < drift_atol(model, 1e-4) and parity.cosine > 0.99999


def test_the_runner_carries_the_past_and_forgets_it_on_reset(fitted_codec: Codec, tmp_path: Path,
                                                              speech: Speech) -> None:
    model = fitted_codec
    runner = StepRunner(export_step(model, tmp_path / "step.onnx"))
    frames = speech(model.sample_rate, index=0, seconds=0.5).split(model.hop_length, dim=-1)[:20]
    first = [runner(frame)[1] for frame in frames]
    runner.reset()
    again = [runner(frame)[1] for frame in frames]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    alone = StepRunner(export_step(model, tmp_path / "alone.onnx"))(frames[-1])[1]  # no past
    assert not torch.allclose(alone, first[-1])  # the past changes the output
    assert torch.tensor([1e-39]).mul(1.0).item() != 0  # the session's flush of subnormals did not leak out


def test_bad_files_frames_and_eager_calls_are_refused(tiny_codec: Codec, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"name it \.onnx"):
        export_step(tiny_codec, tmp_path / "step.bin")
    with pytest.raises(InputError, match="not an exported step file"):
        StepRunner(tmp_path / "missing.onnx")
    runner = StepRunner(export_step(tiny_codec, tmp_path / "step.pt"))
    with pytest.raises(InputError, match="one frame shaped"):
        runner(torch.zeros(1, 1, 2 * tiny_codec.hop_length))
    step = FrameStep(prepare_for_export(tiny_codec), 1)
    with pytest.raises(CodecError, match="only runs while traced"):
        step(torch.zeros(1, 1, tiny_codec.hop_length), *step.initial_state())


def test_cli_exports_the_step_and_prints_its_parity(model_dir: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    clip = min((Path(__file__).parent / "data").glob("*.wav"))
    argv = ["export", str(tmp_path / "out"), "--model", str(model_dir), "--audio", str(clip), "--format", "onnx"]
    assert main([*argv, "--step"]) == 0
    out = capsys.readouterr().out
    assert "step.onnx" in out and "onnx step" in out and "(0 differ beyond near ties)" in out
    assert (tmp_path / "out" / "step.onnx").is_file() and not list((tmp_path / "out").glob("*.tmp*"))
