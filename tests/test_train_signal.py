"""A stop signal sent to every process of a run saves a checkpoint first."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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
