"""Training throughput of the real loop, in audio-seconds per second of compute.

    codec bench-train [--steps 6] [--threads 2] [--batch-size 8]
    codec bench-train --critics [--threads 1] [--batch-size 8]

For each config it times ``train()`` for ``w`` and ``w + steps`` steps on
generated audio and divides the difference, so set-up and warm-up are
excluded. The 16 kHz CPU recipe is timed with and without its adversarial
phase, and the EnCodec-24k-sized config on the same loop, batch and crop
length, so the ratio between them is printed from one run.

``--critics`` instead times, in CPU seconds of this process (so other work
on the machine does not inflate it), one forward and backward pass of each
critic of the recipe configs (``configs/recipes``) on a batch of real and
generated audio, next to one training pass of each generator: what an
adversarial step costs beyond the reconstruction step.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from codec.network.config import load_yaml
from train.config import TrainConfig
from train.loop import train

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _audio(folder: Path, seconds: float = 4.0, rate: int = 24000) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    for i in range(4):
        tone = np.sin(2 * np.pi * (150 + 40 * i) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t))
        sf.write(folder / f"a{i}.wav", (0.3 * tone + 0.01 * rng.standard_normal(t.size)).astype("float32"), rate)


def time_per_step(config_path: Path, overrides: dict, steps: int, warmup: int = 3) -> float:
    """Seconds per training step of ``config_path`` with ``overrides``, set-up excluded."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "audio"
        folder.mkdir()
        _audio(folder)
        base = {"data.train": [str(folder)], "data.valid": [], "data.valid_fraction": 0.0, "data.num_workers": 0,
                "valid_every": 0, "checkpoint_every": 10**9, "log_every": 10**9}
        elapsed = []
        for n in (warmup, warmup + steps):
            config = load_yaml(TrainConfig, config_path, base | overrides | {"steps": n})
            start = time.perf_counter()
            train(config, Path(tmp) / f"run{n}", quiet=True)
            elapsed.append(time.perf_counter() - start)
    return (elapsed[1] - elapsed[0]) / steps


def _cpu_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: allocations, weight-norm set-up
    start = time.process_time()
    for _ in range(repeats):
        fn()
    return (time.process_time() - start) / repeats


def critic_costs(batch_size: int, segment_s: float, repeats: int = 3) -> list[tuple[str, float, float]]:
    """``(name, parameters in millions, CPU seconds per forward + backward)`` of each critic and generator."""
    import torch

    from codec.network.model import Codec
    from train.discriminators import Discriminators

    recipes = CONFIGS / "recipes"
    cpu_recipe = load_yaml(TrainConfig, recipes / "a_current.yaml")
    mrd_recipe = load_yaml(TrainConfig, recipes / "d_istft_mrd.yaml")
    rate = cpu_recipe.model.sample_rate
    wav = 0.1 * torch.randn(batch_size, 1, int(segment_s * rate), generator=torch.Generator().manual_seed(0))
    rows = []
    critics = [
        ("critic msd (3 scales, CPU channels)", dataclasses.replace(cpu_recipe.disc, kinds=("msd",))),
        ("critic mpd (5 periods, CPU channels)", dataclasses.replace(cpu_recipe.disc, kinds=("mpd",))),
        ("critic msstft (5 windows, 32 filters)", dataclasses.replace(cpu_recipe.disc, kinds=("msstft",))),
        ("critic mrd (3 windows, 16 channels)", mrd_recipe.disc),
        ("critic mrd (3 windows, 32 channels: DAC)", dataclasses.replace(mrd_recipe.disc, mrd_channels=32)),
    ]
    for name, disc_config in critics:
        disc = Discriminators(disc_config)
        both = torch.cat([wav, wav]).requires_grad_()  # real and generated, as the loop's critic step

        def step(disc=disc, both=both) -> None:
            sum(logits.mean() for logits, _ in disc(both)).backward()

        rows.append((name, sum(p.numel() for p in disc.parameters()) / 1e6, _cpu_seconds(step, repeats)))
    for name, model_config in [("generator seanet (a, b)", cpu_recipe.model), ("generator istft (c, d)", mrd_recipe.model)]:
        model = Codec(model_config).train()
        model(wav)  # k-means initialisation, once

        def step(model=model) -> None:
            model(wav).wav_hat.abs().mean().backward()

        rows.append((name, sum(p.numel() for p in model.parameters()) / 1e6, _cpu_seconds(step, repeats)))
    return rows


def print_critic_costs(threads: int, batch_size: int, segment_s: float) -> None:
    """Prints the CPU seconds of one forward and backward pass of each critic and generator (:func:`critic_costs`)."""
    import torch

    torch.set_num_threads(threads)
    print(f"forward + backward, batch {batch_size} x {segment_s} s ({threads} thread(s), "
          "critics on real + generated = twice the batch), CPU seconds of this process")
    for name, params, seconds in critic_costs(batch_size, segment_s):
        print(f"{name:42s} {params:6.2f} M {seconds:7.2f} CPU s")


def print_throughput(steps: int, threads: int, batch_size: int, segment_s: float) -> None:
    """Prints the training throughput of the 16 kHz recipe (both phases) and the EnCodec-24k-sized config."""
    common = {"threads": threads, "batch_size": batch_size, "data.segment_s": segment_s}
    cases = [
        ("speech16k, reconstruction phase", "speech16k.yaml", {"disc.start_step": 10**9}),
        ("speech16k, adversarial phase", "speech16k.yaml", {"disc.start_step": 0, "disc.update_prob": 1.0}),
        ("encodec24k-sized, adversarial", "encodec24k.yaml", {"mixed_precision": "no", "disc.update_prob": 1.0}),
    ]
    audio_per_step = batch_size * segment_s
    rows = []
    for name, path, overrides in cases:
        seconds = time_per_step(CONFIGS / path, common | overrides, steps)
        rows.append((name, seconds, audio_per_step / seconds))
    reference = rows[-1][2]
    print(f"\ntraining throughput, batch {batch_size} x {segment_s} s, {threads} thread(s)")
    print(f"{'config':36s} {'s/step':>8s} {'audio s/s':>10s} {'vs 24k':>7s}")
    for name, seconds, rate in rows:
        print(f"{name:36s} {seconds:8.2f} {rate:10.2f} {rate / reference:6.1f}x")
    if any(seconds <= 0 for _, seconds, _ in rows):
        print("a non-positive time means other work on the machine swamped the timed steps: run it idle, more --steps")


if __name__ == "__main__":  # python -m train.bench: the same as `codec bench-train`
    from codec.cli import run_module

    run_module("bench-train")
