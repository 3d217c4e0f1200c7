"""A stop signal sent to every process of a run saves a checkpoint first."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from torch import Tensor

from codec.network.config import CodecConfig, load_yaml
from codec.network.model import Codec
from train import loop
from train.config import TrainConfig
from train.discriminators import Discriminators
from train.loop import train

ROOT = Path(__file__).resolve().parents[1]


def test_sigterm_to_the_process_group_checkpoints_before_stopping(tmp_path: Path) -> None:
    data = ROOT / "tests" / "data"
    cmd = [sys.executable, "-m", "train", "--config", str(ROOT / "configs" / "tiny.yaml"), "--run-dir",
           str(tmp_path / "run"), "--quiet", "steps=100000", "checkpoint_every=100000", "valid_every=0",
           "data.num_workers=1", f"data.train=[{data}]", f"data.valid=[{data}]", "threads=1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not list((tmp_path / "run" / "tensorboard").glob("events*")) and time.time() < deadline:
            time.sleep(0.5)
        time.sleep(3)  # some steps with the data worker running
        os.killpg(proc.pid, signal.SIGTERM)  # main process and data worker alike
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err[-2000:]
    saved = sorted((tmp_path / "run" / "checkpoints").glob("step-*"))
    assert saved and not saved[-1].name.endswith(".tmp")
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


# ----- in-process: a stop signal between steps, and steps skipped for NaN losses --------------------
TINY = ROOT / "configs" / "tiny.yaml"
DATA = ROOT / "tests" / "data"


def _tiny(**overrides: object) -> TrainConfig:
    base = {"data.train": [str(DATA)], "data.valid": [str(DATA)], "valid_every": 0, "threads": 1,
            "steps": 100, "checkpoint_every": 100}
    return load_yaml(TrainConfig, TINY, base | overrides)


def _scripted_loader(monkeypatch: pytest.MonkeyPatch, script: dict[int, Callable[[Tensor], Tensor]]) -> None:
    """Makes the loop's data loader apply ``script[i]`` to batch ``i`` while the loop waits for it."""
    real = loop.make_loader

    def make(*args: object, **kwargs: object) -> Iterator[Tensor]:
        for i, batch in enumerate(real(*args, **kwargs)):
            yield script[i](batch) if i in script else batch

    monkeypatch.setattr(loop, "make_loader", make)


def _sigterm(batch: Tensor) -> Tensor:
    os.kill(os.getpid(), signal.SIGTERM)  # arrives while the loop waits for this batch
    return batch


def _capture_models(monkeypatch: pytest.MonkeyPatch) -> list[Codec]:
    """Records every Codec the loop builds."""
    built: list[Codec] = []

    class Recorded(Codec):
        def __init__(self, config: CodecConfig) -> None:
            super().__init__(config)
            built.append(self)

    monkeypatch.setattr(loop, "Codec", Recorded)
    return built


def _capture_critics(monkeypatch: pytest.MonkeyPatch) -> list[Discriminators]:
    """Records every set of critics the loop builds."""
    built: list[Discriminators] = []

    class Recorded(Discriminators):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(loop, "Discriminators", Recorded)
    return built


def test_a_stop_signal_while_waiting_for_data_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _scripted_loader(monkeypatch, {2: _sigterm})
    train(_tiny(), tmp_path / "run", quiet=True)
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["step-00000002"]
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


def test_a_step_skipped_for_a_nan_loss_leaves_the_codebooks_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models, after_good_step = _capture_models(monkeypatch), {}

    def remember_then_poison(batch: Tensor) -> Tensor:
        after_good_step.update({k: v.clone() for k, v in models[0].quantizer.state_dict().items()})
        return torch.full_like(batch, float("nan"))

    _scripted_loader(monkeypatch, {1: remember_then_poison, 2: _sigterm})
    train(_tiny(), tmp_path / "run", quiet=True)
    now = models[0].quantizer.state_dict()
    assert after_good_step and now.keys() == after_good_step.keys()
    for key, value in after_good_step.items():
        assert torch.equal(now[key], value) and bool(value.isfinite().all()), key
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["step-00000001"]
    assert Codec.from_pretrained(tmp_path / "run" / "model").quantizer.levels[0].embed.isfinite().all()


def test_the_critics_skip_their_update_on_a_nan_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    critics, after_good_step = _capture_critics(monkeypatch), {}

    def remember_then_poison(batch: Tensor) -> Tensor:
        after_good_step.update({k: v.clone() for k, v in critics[0].state_dict().items()})
        return torch.full_like(batch, float("nan"))

    _scripted_loader(monkeypatch, {1: remember_then_poison, 2: _sigterm})
    config = _tiny(**{"disc.update_prob": 1.0, "disc.start_step": 0})  # the critics would train at every step
    train(config, tmp_path / "run", quiet=True)
    now = critics[0].state_dict()
    assert after_good_step and now.keys() == after_good_step.keys()
    for key, value in after_good_step.items():
        assert torch.equal(now[key], value) and bool(value.isfinite().all()), key
