"""The training loop on the tiny config: it learns, resumes exactly, and rejects bad configs."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from codec.errors import ConfigError
from codec.network.config import load_yaml, parse_overrides
from codec.network.model import Codec
from codec.pitch import frame_pitch, pitch_loss
from train.config import OptimConfig, TrainConfig
from train.data import load_excerpt, probe
from train.loop import TrainingError, initialize_from, lr_factor, train, validate
from train.losses import FrameMagnitudeLoss, MelLoss

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.yaml"
DATA = ROOT / "tests" / "data"


def tiny(**overrides: object) -> TrainConfig:
    base = {"data.train": [str(DATA)], "data.valid": [str(DATA)], "valid_every": 0, "threads": 1}
    return load_yaml(TrainConfig, TINY, base | overrides)


def test_training_lowers_reconstruction_error_on_real_speech(tmp_path: Path) -> None:
    config = tiny(steps=60, checkpoint_every=60)
    before = Codec(config.model)
    exported = train(config, tmp_path / "run", quiet=True)
    after = Codec.from_pretrained(exported)
    clips = [load_excerpt(e, 16000, 1.0) for e in probe([str(p) for p in sorted(DATA.glob("*.wav"))], 0.3)]
    mel = MelLoss(16000, (64, 256, 1024), 32)
    torch.manual_seed(0)
    with torch.no_grad():
        before.train()
        before(clips[0][None])  # k-means initialise the untrained codebooks on real speech, as training does
    loss_before = validate(before.eval(), clips, mel)["mel@" + f"{before.bandwidths_kbps[-1]:g}kbps"]
    loss_after = validate(after, clips, mel)["mel@" + f"{after.bandwidths_kbps[-1]:g}kbps"]
    assert loss_after < 0.85 * loss_before


@pytest.mark.parametrize("semantic", [False, True], ids=["plain", "semantic"])
def test_resume_gives_identical_weights(tmp_path: Path, semantic: bool) -> None:
    extra = {"semantic.teacher": "mfcc", "semantic.loss": "ce", "semantic.units": 8,
             "semantic.cache_dir": str(tmp_path / "cache")} if semantic else {}
    straight = train(tiny(steps=6, checkpoint_every=3, **extra), tmp_path / "a", quiet=True)
    train(tiny(steps=3, checkpoint_every=3, **extra), tmp_path / "b", quiet=True)
    resumed = train(tiny(steps=6, checkpoint_every=3, **extra), tmp_path / "b", resume=True, quiet=True)
    files = ["model.safetensors", *(["../checkpoints/step-00000006/model_2.safetensors"] if semantic else [])]
    for name in files:  # the codec, and the semantic head
        a, b = load_file(straight / name), load_file(resumed / name)
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir()) == ["step-00000003", "step-00000006"]


def saved_source(path: Path) -> Codec:
    """A tiny model with weights no seed of a run would draw and trained-looking codebooks, saved at ``path``."""
    source = Codec(tiny().model)
    torch.manual_seed(1)
    for p in source.parameters():
        p.data.normal_()
    for codebook in source.quantizer.levels:  # trained codebooks: k-means must not run again
        codebook.embed.normal_()
        codebook.embed_avg.copy_(codebook.embed * codebook.cluster_size[:, None])
        codebook.initialized.fill_(True)
    source.save_pretrained(path)
    return source


def test_init_starts_from_a_saved_model(tmp_path: Path) -> None:
    source = saved_source(tmp_path / "source")
    config = tiny(steps=1, checkpoint_every=1, **{"optim.lr": 1e-12, "init": str(tmp_path / "source")})
    tuned = Codec.from_pretrained(train(config, tmp_path / "run", quiet=True))
    for (name, a), b in zip(source.named_parameters(), tuned.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6, msg=name)  # one step at a negligible rate
    for a, b in zip(source.quantizer.levels, tuned.quantizer.levels, strict=True):
        kept = ((a.embed - b.embed).abs().amax(-1) < 0.1).float().mean()
        assert kept > 0.9  # one EMA step (and a few restarts) away, not re-clustered


def test_init_with_another_architecture_is_an_error(tmp_path: Path) -> None:
    Codec(tiny(**{"model.dimension": 16}).model).save_pretrained(tmp_path / "source")
    with pytest.raises(TrainingError, match=r"another architecture.*dimension: 16"):
        train(tiny(steps=1, init=str(tmp_path / "source")), tmp_path / "run", quiet=True)


def test_init_without_the_decoder_takes_encoder_and_quantizer_only(tmp_path: Path) -> None:
    source = saved_source(tmp_path / "source")
    narrower = {"model.decoder": "istft", "model.decoder_dim": 16, "model.decoder_layers": 1, "model.n_fft": 64}
    with pytest.raises(TrainingError, match=r"another architecture.*decoder: 'seanet' != 'istft'"):
        train(tiny(steps=1, init=str(tmp_path / "source"), **narrower), tmp_path / "refused", quiet=True)
    config = tiny(steps=1, checkpoint_every=1, init=str(tmp_path / "source"), init_decoder=False,
                  **narrower, **{"optim.lr": 1e-12})
    tuned = Codec.from_pretrained(train(config, tmp_path / "run", quiet=True))
    for (name, a), b in zip(source.encoder.named_parameters(), tuned.encoder.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6, msg=name)
    for a, b in zip(source.quantizer.levels, tuned.quantizer.levels, strict=True):
        assert ((a.embed - b.embed).abs().amax(-1) < 0.1).float().mean() > 0.9
    assert tuned.config.decoder_dim == 16


def test_resume_without_checkpoint_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="no checkpoint"):
        train(tiny(steps=1), tmp_path / "empty", resume=True, quiet=True)


def test_checkpoints_keep_the_last_k(tmp_path: Path) -> None:
    train(tiny(steps=8, checkpoint_every=2, keep_checkpoints=2), tmp_path / "run", quiet=True)
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert names == ["step-00000006", "step-00000008"]


def test_trains_on_generated_audio_with_balancer_off_and_lsgan(tmp_path: Path) -> None:
    import numpy as np
    import soundfile as sf

    rate = 22050  # resampled to 16 kHz on the fly
    t = np.arange(rate) / rate
    for i in range(3):
        sf.write(tmp_path / f"tone{i}.flac", (0.3 * np.sin(2 * np.pi * (220 + 110 * i) * t)).astype("float32"), rate)
    config = tiny(**{"data.train": [str(tmp_path)], "data.valid": [], "data.valid_fraction": 0.0, "steps": 4,
                     "loss.balancer": False, "loss.adversarial_kind": "lsgan", "disc.kinds": ["msstft"],
                     "disc.msstft_filters": 4, "disc.msstft_windows": [128, 256]})
    exported = train(config, tmp_path / "run", quiet=True)
    assert (exported / "model.safetensors").is_file()


def test_validation_writes_tensorboard_logs(tmp_path: Path) -> None:
    train(tiny(steps=2, valid_every=2, log_every=1, checkpoint_every=2), tmp_path / "run", quiet=True)
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.parametrize(("preset", "low"), [("tiny", "12kbps"), ("16khz", "2kbps")], ids=["nearest-2", "exactly-2"])
def test_validation_logs_audio_and_spectrograms_near_2kbps_and_at_all_codebooks(
        tmp_path: Path, preset: str, low: str) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    from codec.network.presets import PRESETS
    from train.loop import _log_audio

    torch.manual_seed(0)
    codec = Codec(PRESETS[preset]()).eval()
    clips = [load_excerpt(e, 16000, 0.5) for e in probe([str(p) for p in sorted(DATA.glob("*.wav"))[:3]], 0.3)]
    writer = SummaryWriter(str(tmp_path))
    _log_audio(writer, codec, clips, step=7)
    writer.close()
    events = EventAccumulator(str(tmp_path), size_guidance={"audio": 0, "images": 0})
    events.Reload()
    full = f"{codec.bandwidths_kbps[-1]:g}kbps"
    names = [f"clip{i}/{name}" for i in range(2) for name in ("reference", low, full)]
    assert sorted(events.Tags()["audio"]) == sorted(names)
    assert sorted(events.Tags()["images"]) == ["clip0/spectrogram", "clip1/spectrogram"]
    for name in names:
        (event,) = events.Audio(name)
        assert event.step == 7 and event.sample_rate == 16000 and event.length_frames == clips[0].shape[-1]
    (image,) = events.Images("clip0/spectrogram")
    assert image.width > 300 and image.height > 300  # three stacked spectrograms
    assert codec.training  # left in training mode, as the loop expects


@pytest.mark.parametrize(
    ("overrides", "key"),
    [({"optim.learning_rate": 1.0}, "optim.learning_rate"), ({"batch_size": "eight"}, "batch_size"),
     ({"model.ratios": 4}, "model.ratios")],
    ids=["unknown-key", "wrong-type", "not-a-list"],
)
def test_config_errors_name_the_key(overrides: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_yaml(TrainConfig, TINY, overrides)


def test_overrides_parse_yaml_values() -> None:
    assert parse_overrides(["optim.lr=1e-3", "data.train=[a, b]", "steps=5"]) == {
        "optim.lr": 1e-3, "data.train": ["a", "b"], "steps": 5}


def test_shipped_configs_load() -> None:
    for path in sorted((ROOT / "configs").glob("**/*.yaml")):
        load_yaml(TrainConfig, path)


def test_istft_decoder_trains_with_log_mel_and_without_critics(tmp_path: Path) -> None:
    config = tiny(**{"model.decoder": "istft", "model.decoder_dim": 16, "model.decoder_layers": 2, "model.n_fft": 16,
                     "loss.mel_kind": "log_mel", "loss.l1": 0.0, "loss.mel_windows": [32, 64, 128],
                     "loss.mel_bins": [5, 10, 20], "disc.kinds": [], "steps": 4, "checkpoint_every": 2})
    exported = train(config, tmp_path / "run", quiet=True)
    model = Codec.from_pretrained(exported)
    assert model.config.decoder == "istft"
    assert train(config, tmp_path / "run", resume=True, quiet=True) == exported  # resumes with the idle critic optimizer


def test_phase_loss_joins_the_balanced_losses(tmp_path: Path) -> None:
    config = tiny(**{"loss.phase": 1.0, "loss.phase_windows": [64, 128], "disc.kinds": [], "steps": 2,
                     "checkpoint_every": 2})
    train(config, tmp_path / "run", quiet=True)
    balancer = torch.load(next((tmp_path / "run" / "checkpoints").glob("step-*/custom_checkpoint_0.pkl")),
                          weights_only=False)
    assert {"mel", "phase"} <= set(balancer["norm_sums"])


RECOVERED = {"model.decoder": "istft", "model.decoder_dim": 16, "model.decoder_layers": 2, "model.n_fft": 16,
             "model.decoder_phase": "recovered", "model.decoder_subframes": 2}


def test_recovered_phase_decoder_trains_its_magnitudes_on_speech(tmp_path: Path) -> None:
    """With ``loss.magnitude`` the predicted frames approach the speech's own; both losses are balanced."""
    config = tiny(**(RECOVERED | {"loss.magnitude": 1.0, "loss.l1": 0.0, "disc.kinds": [], "steps": 30,
                                  "checkpoint_every": 30, "optim.lr": 3e-3}))
    before = Codec(config.model)
    after = Codec.from_pretrained(train(config, tmp_path / "run", quiet=True))
    balancer = torch.load(next((tmp_path / "run" / "checkpoints").glob("step-*/custom_checkpoint_0.pkl")),
                          weights_only=False)
    assert {"mel", "magnitude"} <= set(balancer["norm_sums"])
    wav = load_excerpt(probe([str(p) for p in sorted(DATA.glob("*.wav"))], 0.3)[0], 16000, 1.0)[None]
    loss = FrameMagnitudeLoss(16, 4)
    with torch.no_grad():
        before.train()
        before(wav)  # k-means initialise the codebooks on this speech, as training does
        errors = [loss(model.eval()(wav).log_magnitude, wav) for model in (before, after)]
    assert errors[1] < 0.8 * errors[0], errors


def test_magnitude_loss_needs_a_recovered_phase_decoder() -> None:
    with pytest.raises(ConfigError, match="loss.magnitude trains the magnitudes"):
        tiny(**{"loss.magnitude": 1.0})


def test_init_may_switch_the_decoder_to_recovered_phase(tmp_path: Path) -> None:
    """A fine-tune from an absolute-phase istft model keeps every weight but the head, whose layout changed."""
    absolute = {k: v for k, v in RECOVERED.items() if k not in ("model.decoder_phase", "model.decoder_subframes")}
    source = Codec(tiny(**absolute).model)
    source.save_pretrained(tmp_path / "source")
    run = {"steps": 1, "checkpoint_every": 1, "optim.lr": 1e-12, "disc.kinds": [], "init": str(tmp_path / "source")}
    with pytest.raises(TrainingError, match="decoder_dim"):  # the backbone's width is not the head's layout
        train(tiny(**(RECOVERED | {"model.decoder_dim": 8} | run)), tmp_path / "other", quiet=True)
    saved_rows = source.decoder.head.weight[:9]  # the saved head's 9 log-magnitude rows, then 9 phase rows
    for subframes, n_fft in ((4, 16), (4, 32)):
        config = tiny(**(RECOVERED | {"model.decoder_subframes": subframes, "model.n_fft": n_fft} | run))
        tuned = Codec.from_pretrained(train(config, tmp_path / f"run{n_fft}", quiet=True))
        bins = n_fft // 2 + 1
        assert tuned.decoder.head.weight.shape[0] == subframes * bins != source.decoder.head.weight.shape[0]
        for (name, a), b in zip(source.decoder.blocks.named_parameters(), tuned.decoder.blocks.parameters(),
                                strict=True):
            torch.testing.assert_close(b, a, rtol=0, atol=1e-6, msg=name)
        for frame in tuned.decoder.head.weight.view(subframes, bins, -1):  # each frame starts from the saved rows,
            step = n_fft // 16  # at the saved bins' frequencies
            torch.testing.assert_close(frame[::step], saved_rows, rtol=0, atol=1e-6)
            if step > 1:  # and between them, halfway
                torch.testing.assert_close(frame[1::step], (saved_rows[:-1] + saved_rows[1:]) / 2, rtol=0, atol=1e-6)


def test_mrd_critic_trains_the_istft_decoder(tmp_path: Path) -> None:
    config = tiny(**{"model.decoder": "istft", "model.decoder_dim": 16, "model.decoder_layers": 2, "model.n_fft": 16,
                     "disc.kinds": ["mrd"], "disc.mrd_windows": [256, 128], "disc.mrd_channels": 4,
                     "steps": 3, "log_every": 1})
    before = Codec(config.model)
    exported = train(config, tmp_path / "run", quiet=True)
    after = Codec.from_pretrained(exported)
    changed = [k for k, v in after.decoder.state_dict().items() if not torch.equal(v, before.decoder.state_dict()[k])]
    assert changed


def _snapshots(run: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in (run / "snapshots" / "index.jsonl").read_text().splitlines()]


def test_cpu_budget_ends_the_run_and_snapshots_follow_cpu_time(tmp_path: Path) -> None:
    """The run stops once its CPU seconds reach the budget; a resume with a larger one continues the count."""
    run = tmp_path / "run"
    train(tiny(steps=100_000, cpu_budget_s=2.0, snapshot_every_cpu_s=0.5, checkpoint_every=100_000), run, quiet=True)
    first = _snapshots(run)
    assert len(first) >= 3 and first[-1]["cpu_s"] <= 2.0
    assert all(a["cpu_s"] < b["cpu_s"] and a["step"] < b["step"] for a, b in itertools.pairwise(first))
    for record in first:
        assert Codec.from_pretrained(run / "snapshots" / record["snapshot"]).config.name == "codec-tiny"
    stopped_at = int(max((run / "checkpoints").iterdir()).name.split("-")[1])
    assert stopped_at < 100_000
    train(tiny(steps=100_000, cpu_budget_s=3.0, snapshot_every_cpu_s=0.5, checkpoint_every=100_000), run,
          resume=True, quiet=True)
    later = _snapshots(run)[len(first):]
    assert later and later[0]["cpu_s"] > first[-1]["cpu_s"] and later[0]["step"] > stopped_at
    assert int(max((run / "checkpoints").iterdir()).name.split("-")[1]) > stopped_at


def test_init_from_a_snapshot_continues_the_runs_cpu_clock_and_step(tmp_path: Path) -> None:
    """A branch from a run's snapshot starts at the snapshot's CPU seconds and step, and keeps its budget."""
    trunk = tmp_path / "trunk"
    train(tiny(steps=100_000, cpu_budget_s=1.0, snapshot_every_cpu_s=0.5, checkpoint_every=100_000), trunk, quiet=True)
    origin = _snapshots(trunk)[0]
    branch = tmp_path / "branch"
    config = tiny(steps=100_000, cpu_budget_s=origin["cpu_s_at_save"] + 1.0, snapshot_every_cpu_s=0.5,
                  checkpoint_every=100_000, init=str(trunk / "snapshots" / origin["snapshot"]))
    train(config, branch, quiet=True)
    records = _snapshots(branch)
    assert records and records[0]["cpu_s"] > origin["cpu_s"] and records[0]["step"] > origin["step"]
    assert records[-1]["cpu_s"] <= config.cpu_budget_s
    spent = dataclasses.replace(config, cpu_budget_s=origin["cpu_s_at_save"] / 2)  # a budget meant as the branch's own
    with pytest.raises(TrainingError, match=r"cpu_budget_s=\S+ is already spent.*cpu_budget_s=\d+ for one more"):
        train(spent, tmp_path / "spent", quiet=True)
    assert not (tmp_path / "spent" / "model").exists()


def test_the_speech_recipe_is_the_winner_of_the_recipe_comparison() -> None:
    """configs/speech16k.yaml trains what won docs/recipes.md: candidate (i)'s model, losses, critics and optimizer."""
    shipped = load_yaml(TrainConfig, ROOT / "configs" / "speech16k.yaml")
    winner = load_yaml(TrainConfig, ROOT / "configs" / "recipes" / "i_istft_narrow.yaml")
    assert (shipped.model, shipped.loss, shipped.disc, shipped.optim) == (winner.model, winner.loss, winner.disc,
                                                                          winner.optim)


def test_balancing_at_log_magnitudes_keeps_the_waveforms_gradient_scale(speech: Callable[..., torch.Tensor]) -> None:
    """With a recovered phase the losses are balanced at the log-magnitudes; scaled by ``waveform_to`` the
    waveform loss gets the parameter gradient that balancing at the waveform gives it."""
    from train.balancer import Balancer
    from train.loop import waveform_to

    config = tiny(**RECOVERED)
    torch.manual_seed(0)
    model = Codec(config.model).eval()  # no codebook updates or dropout: both passes see the same network
    wav = speech(16000, index=0, seconds=0.5)
    mel = MelLoss(16000, (64, 256), 32)
    grads = []
    for at_waveform in (True, False):
        model.zero_grad()
        out = model(wav)
        losses = {"mel": mel(out.wav_hat, wav)}
        balancer = Balancer({"mel": 1.0})
        if at_waveform:
            objective = balancer.surrogate(losses, out.wav_hat)
        else:
            scale, mel_grad = waveform_to(losses["mel"], out.wav_hat, out.log_magnitude, lambda t: t)
            objective = balancer.surrogate(losses, out.log_magnitude, scale, known={"mel": mel_grad})
        objective.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.decoder.parameters()]))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-3, atol=1e-9)
    assert grads[0].norm() > 0


def test_critics_learn_alone_until_their_judge_step(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = tiny(steps=8, log_every=1, checkpoint_every=1, keep_checkpoints=8, **{"disc.judge_step": 5})
    train(config, tmp_path / "run", quiet=True)
    events = EventAccumulator(str(next((tmp_path / "run" / "tensorboard").iterdir())))
    events.Reload()
    assert [e.step for e in events.Scalars("loss/discriminator")] == list(range(1, 9))  # they learn from the start
    assert [e.step for e in events.Scalars("loss/adversarial")] == [6, 7, 8]  # they judge steps 5 to 7 (logged 6-8)
    critics = [load_file(tmp_path / "run" / "checkpoints" / f"step-{s:08d}" / "model_1.safetensors") for s in (1, 5)]
    assert any(not torch.equal(v, critics[1][k]) for k, v in critics[0].items())  # moved before judging


def test_cosine_decay_ends_after_decay_steps_counted_from_the_runs_own_start():
    optim = OptimConfig(warmup_steps=10, decay="cosine", min_lr_ratio=0.1, decay_steps=100)
    factor = lr_factor(optim, total_steps=200_000)  # a branch of a long run: its own 100 steps, not the run's
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(10) == pytest.approx(1.0) and factor(60) == pytest.approx(0.55)
    assert factor(110) == pytest.approx(0.1) and factor(5000) == pytest.approx(0.1)
    until_the_end = lr_factor(OptimConfig(warmup_steps=10, decay="cosine", min_lr_ratio=0.1), total_steps=210)
    assert until_the_end(110) == pytest.approx(0.55) and until_the_end(210) == pytest.approx(0.1)
    with pytest.raises(ConfigError, match="decay_steps"):
        lr_factor(OptimConfig(decay="cosine", decay_steps=-1), total_steps=10)


HARMONIC = {"model.decoder": "istft", "model.decoder_dim": 16, "model.decoder_layers": 2, "model.n_fft": 16,
            "model.decoder_harmonics": True, "loss.pitch": 1.0, "disc.kinds": []}


def test_harmonics_and_the_pitch_loss_go_together() -> None:
    with pytest.raises(ConfigError, match="decoder_harmonics and loss.pitch go together"):
        tiny(**{k: v for k, v in HARMONIC.items() if k != "loss.pitch"})
    with pytest.raises(ConfigError, match="decoder_harmonics and loss.pitch go together"):
        tiny(**{"loss.pitch": 1.0})


def test_harmonic_decoder_learns_the_pitch_of_speech(tmp_path: Path) -> None:
    """``loss.pitch`` trains the decoder's fundamental towards Praat's track of real speech."""
    config = tiny(**(HARMONIC | {"steps": 80, "checkpoint_every": 80, "loss.l1": 0.0}))
    before = Codec(config.model)
    after = Codec.from_pretrained(train(config, tmp_path / "run", quiet=True))
    wav = load_excerpt(probe([str(p) for p in sorted(DATA.glob("*.wav"))], 0.3)[0], 16000, 1.0)[None]
    f0 = frame_pitch(wav, 16000, config.model.hop_length, config.model.n_fft)
    assert (f0 > 0).any()
    with torch.no_grad():
        before.train()
        before(wav)  # k-means initialise the codebooks on this speech, as training does
        errors = [float(pitch_loss(model.eval()(wav).pitch, f0)) for model in (before, after)]
    assert errors[1] < 0.85 * errors[0], errors  # 0.77 here: 192 classes take more than 80 tiny steps


def test_init_from_a_decoder_without_harmonics_keeps_its_weights(tmp_path: Path) -> None:
    plain = {k: v for k, v in HARMONIC.items() if k not in ("model.decoder_harmonics", "loss.pitch")}
    source = Codec(tiny(**plain).model)
    source.save_pretrained(tmp_path / "source")
    run = {"steps": 1, "checkpoint_every": 1, "optim.lr": 1e-12, "init": str(tmp_path / "source")}
    tuned = Codec.from_pretrained(train(tiny(**(HARMONIC | run)), tmp_path / "run", quiet=True))
    assert tuned.config.decoder_harmonics and tuned.decoder.source_head is not None
    for name, weight in source.state_dict().items():
        if name.startswith(("encoder.", "decoder.")):  # the first step fits the untrained codebooks
            torch.testing.assert_close(tuned.state_dict()[name], weight, rtol=0, atol=1e-6, msg=name)
    # and back: a plain fine-tune of the harmonic model drops the source head
    tuned.save_pretrained(tmp_path / "harmonic")
    back = train(tiny(**(plain | run | {"init": str(tmp_path / "harmonic")})), tmp_path / "back", quiet=True)
    assert Codec.from_pretrained(back).decoder.source_head is None


def test_init_may_add_decoder_blocks_that_start_as_identities(
    tmp_path: Path, speech: Callable[..., torch.Tensor]
) -> None:
    """A fine-tune with more decoder blocks decodes as the saved model did at its start, then trains the new ones."""
    shallow = tiny(**(HARMONIC | {"model.decoder_layers": 2}))
    torch.manual_seed(0)
    source = Codec(shallow.model)
    with torch.no_grad():
        source.train()(speech(16000, index=0, seconds=1.0))  # k-means start of the codebooks, so decoding means something
    source.save_pretrained(tmp_path / "source")
    run = {"model.decoder_layers": 4, "steps": 2, "checkpoint_every": 2, "init": str(tmp_path / "source")}
    deeper = tiny(**(HARMONIC | run))
    grown = Codec(deeper.model)
    initialize_from(grown, str(tmp_path / "source"))
    wav = speech(16000, index=1, seconds=1.0)
    with torch.no_grad():
        torch.testing.assert_close(grown.eval()(wav).wav_hat, source.eval()(wav).wav_hat, rtol=0, atol=1e-6)
    assert all(float(block.gamma.detach().abs().max()) == 0.0 for block in grown.decoder.blocks[2:])
    tuned = Codec.from_pretrained(train(deeper, tmp_path / "run", quiet=True))
    assert all(float(block.gamma.detach().abs().max()) > 0.0 for block in tuned.decoder.blocks[2:])  # the new blocks learn
    with pytest.raises(TrainingError, match="may add blocks, not drop them"):
        initialize_from(Codec(shallow.model), str(tmp_path / "run" / "model"))
