"""The training loop, top to bottom: prepare, discriminator step, generator step, log, validate, checkpoint.

Runs on one CPU as it does on many GPUs: ``accelerate launch -m train --config X.yaml``
spreads it over the processes accelerate starts, with no change to the code.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.nn import functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from codec.atomic import read_jsonl
from codec.errors import CodecError, ConfigError
from codec.measures import perplexity, si_sdr_db
from codec.network.config import CodecConfig, to_dict
from codec.network.model import Codec, CodecOutput
from codec.pitch import frame_pitch, pitch_loss
from codec.resolve import load_codec
from train.balancer import Balancer
from train.config import OptimConfig, TrainConfig
from train.data import CropDataset, ShardDataset, StepSampler, is_shard_source, load_excerpt, split_entries
from train.discriminators import Discriminators
from train.losses import (
    FrameMagnitudeLoss,
    PhaseDerivativeLoss,
    build_mel_loss,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from train.semantic import SemanticDistillation, build_semantic

log = logging.getLogger(__name__)


class TrainingError(CodecError):
    """Training cannot go on (too many NaN/Inf steps, nothing to resume from)."""


@dataclass
class Progress:
    """Counters saved with every checkpoint."""

    step: int = 0
    bad_steps: int = 0
    cpu_s: float = 0.0

    def state_dict(self) -> dict:
        return {"step": self.step, "bad_steps": self.bad_steps, "cpu_s": self.cpu_s}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.bad_steps = int(state["step"]), int(state["bad_steps"])
        self.cpu_s = float(state.get("cpu_s", 0.0))  # checkpoints written before CPU accounting start at 0


def lr_factor(optim: OptimConfig, total_steps: int):
    """Learning-rate multiplier per scheduler step: linear warm-up, then constant or cosine decay.

    Args:
        optim: The schedule's settings.
        total_steps: The run's ``steps``; the cosine ends there unless ``optim.decay_steps`` is set.

    Returns:
        A function of the scheduler's step count (0 at the run's own start, also after ``init=``).
    """

    decay_steps = optim.decay_steps or total_steps - optim.warmup_steps

    def factor(step: int) -> float:
        if step < optim.warmup_steps:
            return (step + 1) / optim.warmup_steps
        if optim.decay == "cosine":
            progress = min((step - optim.warmup_steps) / max(decay_steps, 1), 1.0)
            return optim.min_lr_ratio + (1 - optim.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        return 1.0

    if optim.decay not in ("none", "cosine"):
        raise ConfigError(f"optim.decay must be 'none' or 'cosine', got {optim.decay!r}")
    if optim.decay_steps < 0:
        raise ConfigError(f"optim.decay_steps must be >= 0 (0: decay until steps), got {optim.decay_steps}")
    return factor


class Checkpoints:
    """Numbered ``accelerator.save_state`` folders, written atomically, the last ``keep`` kept."""

    def __init__(self, root: Path, keep: int) -> None:
        self.root, self.keep = root, keep

    def latest(self) -> Path | None:
        done = sorted(p for p in self.root.glob("step-*") if not p.name.endswith(".tmp"))
        return done[-1] if done else None

    def save(self, accelerator: Accelerator, step: int) -> Path:
        final = self.root / f"step-{step:08d}"
        tmp = self.root / f"step-{step:08d}.tmp"
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            for old in sorted(p for p in self.root.glob("step-*") if not p.name.endswith(".tmp"))[: -self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()
        return final


@contextmanager
def stop_requests():
    """Turns SIGINT and SIGTERM into a flag the loop checks after each step and before each batch."""
    flag = [False]

    def handler(signum, frame):
        flag[0] = True

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def make_loader(
    config: TrainConfig, entries, accelerator: Accelerator, step: int, semantic: SemanticDistillation | None = None
) -> DataLoader:
    """Batches of crops ``[B, 1, T]`` continuing at ``step`` (shards: a fresh shuffled stream).

    With ``semantic``, batches are ``[crops, teacher targets [B, L', F, D_t]]``, and with its speaker
    adversary ``[crops, targets, speaker indices [B]]``.
    """
    rate, world, rank = config.model.sample_rate, accelerator.num_processes, accelerator.process_index
    shards = [s for s in config.data.train if is_shard_source(s)]
    if shards:
        dataset = ShardDataset(shards, rate, config.data, seed=config.seed + step)
        return DataLoader(dataset, batch_size=config.batch_size, num_workers=config.data.num_workers,
                          worker_init_fn=_ignore_stop_signals)
    sampler = StepSampler(len(entries), config.seed, start=step * config.batch_size * world, rank=rank, world=world)
    return DataLoader(
        CropDataset(entries, rate, config.data, semantic.targets if semantic else None,
                    semantic.speakers if semantic else None),
        batch_size=config.batch_size, sampler=sampler,
        num_workers=config.data.num_workers, generator=torch.Generator().manual_seed(config.seed),
        persistent_workers=config.data.num_workers > 0, worker_init_fn=_ignore_stop_signals,
    )


def _ignore_stop_signals(worker_id: int) -> None:
    """Data workers leave SIGINT/SIGTERM to the main process, which checkpoints before stopping.

    A signal sent to every process of the run (Ctrl-C in a terminal, ``pkill``,
    a job scheduler) would otherwise kill the workers first, and the loop would
    die on the broken loader without saving.
    """
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)


#: Model settings that a fine-tune may change: the name, EMA and dropout behaviour, and the iSTFT decoder's
#: head layout (:data:`HEAD_LAYOUT_KEYS`).
TRAINING_ONLY_KEYS = frozenset({"name", "ema_decay", "epsilon", "kmeans_iters", "dead_code_ratio",
                                "quantizer_dropout", "quantizer_bypass"})
#: What the iSTFT decoder's head predicts: a fine-tune may change it, and the head is then laid out afresh
#: (:func:`_relaid_head`); the frame length touches no other weight.
HEAD_LAYOUT_KEYS = frozenset({"decoder_phase", "decoder_subframes", "n_fft"})
#: Added by ``decoder_harmonics``: a fine-tune from a decoder without them starts them afresh.
ADDED_KEYS = frozenset({"decoder_harmonics"})
SOURCE_PREFIX = "decoder.source_head."
#: The iSTFT decoder's depth: a fine-tune may add blocks after the saved ones (:func:`_grown_blocks`).
GROWN_KEYS = frozenset({"decoder_layers"})
BLOCKS_PREFIX = "decoder.blocks."

#: The iSTFT decoder's output layer.
HEAD_PREFIX = "decoder.head."
#: The decoder's settings: with ``init_decoder: false`` they may differ from the saved model's.
DECODER_KEYS = frozenset({"decoder", "decoder_dim", "decoder_layers"}) | HEAD_LAYOUT_KEYS | ADDED_KEYS
DECODER_PREFIX = "decoder."


def initialize_from(model: Codec, name_or_path: str, decoder: bool = True) -> None:
    """Copies the weights and codebooks of a saved model into ``model`` (a fine-tune's start).

    Args:
        model: The model to train.
        name_or_path: A saved model's directory or a bundled name.
        decoder: Whether to copy the decoder too; ``False`` copies the encoder and
            quantizer only, and the decoder (whose settings may then differ) keeps
            ``model``'s fresh initialisation.

    Raises:
        TrainingError: If the saved model's architecture differs from ``model``'s
            (any model setting outside :data:`TRAINING_ONLY_KEYS`, and outside
            :data:`HEAD_LAYOUT_KEYS`, :data:`ADDED_KEYS` and :data:`GROWN_KEYS` for
            two iSTFT decoders, or :data:`DECODER_KEYS` without ``decoder``), or an
            iSTFT decoder with fewer blocks than the saved one.
    """
    source = load_codec(os.path.expanduser(name_or_path))
    mine, theirs = to_dict(model.config), to_dict(source.config)
    istft = mine["decoder"] == theirs["decoder"] == "istft"
    free = TRAINING_ONLY_KEYS | HEAD_LAYOUT_KEYS | ADDED_KEYS | GROWN_KEYS if istft else TRAINING_ONLY_KEYS
    if istft and decoder and mine["decoder_layers"] < theirs["decoder_layers"]:
        raise TrainingError(f"init={name_or_path!r} has {theirs['decoder_layers']} decoder blocks and model."
                            f"decoder_layers is {mine['decoder_layers']}: a fine-tune may add blocks, not drop them")
    if not decoder:
        free |= DECODER_KEYS
    differ = ", ".join(f"{k}: {theirs[k]!r} != {mine[k]!r}" for k in mine if k not in free and mine[k] != theirs[k])
    if differ:
        raise TrainingError(f"init={name_or_path!r} has another architecture than model ({differ}); "
                            "set the model section to the saved model's config")
    state = source.state_dict()
    if not decoder:
        own = model.state_dict()
        model.load_state_dict({k: v for k, v in state.items() if not k.startswith(DECODER_PREFIX)}
                              | {k: v for k, v in own.items() if k.startswith(DECODER_PREFIX)})
        log.info("encoder and quantizer initialised from %s (model id %s); the decoder starts afresh",
                 name_or_path, source.model_id)
        return
    relaid = istft and any(theirs[k] != mine[k] for k in HEAD_LAYOUT_KEYS)
    if relaid:
        state.update(_relaid_head(state, source.config, model))
    own = model.state_dict()
    fresh = {k: v for k, v in own.items() if k.startswith(SOURCE_PREFIX) and k not in state}
    grown = _grown_blocks(own, state)
    model.load_state_dict({k: v for k, v in state.items() if k in own or not k.startswith(SOURCE_PREFIX)}
                          | fresh | grown)
    log.info("generator initialised from %s (model id %s)%s%s%s", name_or_path, source.model_id,
             "; the decoder head's log-magnitude rows carried to each predicted frame's bins, any phase rows "
             "start afresh" if relaid else "", "; the harmonic source's head starts afresh" if fresh else "",
             f"; {theirs['decoder_layers']} decoder blocks, then {mine['decoder_layers'] - theirs['decoder_layers']} "
             "new ones that start as identities" if grown else "")


def _grown_blocks(own: dict[str, torch.Tensor], saved: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The weights of ``own``'s decoder blocks that ``saved`` lacks, each block's output scale ``gamma`` at 0.

    A block adds ``gamma * mlp(x)`` to its input, so with ``gamma`` at 0 the
    grown decoder computes what the saved one did (the blocks come before the
    final norm), and its new blocks take a share of the gradient through their
    ``gamma`` from the first step on, as residual blocks initialised at zero
    do (ReZero, Bachlechner et al. 2020, arXiv 2003.04887).
    """
    return {k: torch.zeros_like(v) if k.endswith(".gamma") else v
            for k, v in own.items() if k.startswith(BLOCKS_PREFIX) and k not in saved}


def _relaid_head(state: dict[str, torch.Tensor], source: CodecConfig, model: Codec) -> dict[str, torch.Tensor]:
    """The istft decoder head of ``model`` for a fine-tune to another head layout (:data:`HEAD_LAYOUT_KEYS`).

    Each of ``model``'s predicted frames starts from the saved log-magnitude
    rows of the first saved frame, interpolated linearly in frequency onto its
    own bins; phase rows, if any, keep ``model``'s fresh initialisation.
    """
    saved_bins, bins = source.n_fft // 2 + 1, model.config.n_fft // 2 + 1
    position = torch.arange(bins, dtype=torch.float64) * source.n_fft / model.config.n_fft  # in saved bins
    low = position.floor().long().clamp(max=saved_bins - 1)
    high, frac = (low + 1).clamp(max=saved_bins - 1), (position - low).float()
    head = {}
    for name in ("weight", "bias"):
        saved = state[HEAD_PREFIX + name][:saved_bins]  # the first frame's log-magnitude rows
        frac_rows = frac.view(-1, *[1] * (saved.dim() - 1))
        rows_in = saved[low] * (1 - frac_rows) + saved[high] * frac_rows  # [K, ...]
        mine = model.state_dict()[HEAD_PREFIX + name].clone()
        rows = mine.view(model.config.decoder_subframes, -1, *mine.shape[1:])  # [R, K or 2K, ...]
        rows[:, :bins] = rows_in
        head[HEAD_PREFIX + name] = mine
    return head


def snapshot_origin(name_or_path: str) -> tuple[float, int]:
    """The CPU seconds and step at which a run saved the snapshot ``name_or_path``; ``(0.0, 0)`` for other models.

    A fine-tune from a run's snapshot (``RUN/snapshots/cpu-<seconds>s``, listed in
    ``RUN/snapshots/index.jsonl``) continues that run's CPU clock, step count and data
    order (optimizers and the learning-rate warm-up start afresh): it is a branch of
    the run, and its own snapshots sit on the same CPU-seconds axis.
    """
    snapshot = Path(os.path.expanduser(name_or_path))
    index = snapshot.parent / "index.jsonl"
    if not index.is_file():
        return 0.0, 0
    for record in read_jsonl(index):
        if record.get("snapshot") == snapshot.name:
            return float(record["cpu_s_at_save"]), int(record["step"])
    return 0.0, 0


@dataclass(frozen=True)
class Parts:
    """What set-up builds for a run: the prepared networks, their optimizers, the losses and the data.

    ``model``, ``disc`` and the optimizers and schedulers are what ``accelerator.prepare``
    returned (wrapped on many processes); ``codec`` and ``critic`` are the bare modules.
    """

    config: TrainConfig
    run_dir: Path
    accelerator: Accelerator
    model: torch.nn.Module
    disc: torch.nn.Module
    codec: Codec
    critic: Discriminators
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    sched_g: torch.optim.lr_scheduler.LRScheduler
    sched_d: torch.optim.lr_scheduler.LRScheduler
    weights: dict[str, float]
    balancer: Balancer
    semantic: SemanticDistillation | None
    mel_loss: torch.nn.Module
    phase_loss: PhaseDerivativeLoss | None
    magnitude_loss: FrameMagnitudeLoss | None
    progress: Progress
    checkpoints: Checkpoints
    loader: DataLoader
    valid: list[torch.Tensor]
    adversarial: bool  # critics exist and an adversarial or feature loss has weight

    def adversarial_at(self, step: int) -> bool:
        """Whether the critics train at ``step``."""
        return self.adversarial and step >= self.config.disc.start_step

    def judging_at(self, step: int) -> bool:
        """Whether the critics judge the generator at ``step`` (adversarial and feature losses)."""
        return self.adversarial_at(step) and step >= self.config.disc.judge_step


@dataclass(frozen=True)
class GeneratorStats:
    """What one generator step reports: its losses, the commitment loss and the gradient norm before clipping."""

    losses: dict[str, torch.Tensor]
    commitment: torch.Tensor
    grad_norm: torch.Tensor


def train(config: TrainConfig, run_dir: Path, resume: bool = False, quiet: bool = False) -> Path:
    """Trains a codec; returns the directory of the exported generator (``run_dir / "model"``).

    Args:
        config: The run's settings.
        run_dir: Where checkpoints, TensorBoard logs and the exported model go.
        resume: Continue from the newest checkpoint in ``run_dir``.
        quiet: No progress bar.

    Raises:
        TrainingError: Nothing to resume from, or too many NaN/Inf steps.
    """
    parts = prepare(config, run_dir, resume)
    accelerator, codec, progress = parts.accelerator, parts.codec, parts.progress
    main = accelerator.is_main_process
    meter = Meter(parts, quiet)
    cpu_clock = CPUClock(progress, config, run_dir if main else None)
    saved_step = progress.step if resume else None  # the step of the newest checkpoint
    with stop_requests() as stop:
        for batch in parts.loader:
            if progress.step >= config.steps or stop[0] or cpu_clock.spent():
                break
            wav, target, speaker = split_batch(batch, parts.semantic)
            wav = wav.to(accelerator.device)  # [B, 1, T]
            f0 = frame_pitch(wav, codec.sample_rate, codec.hop_length, codec.config.n_fft) if config.loss.pitch else None
            parts.model.train(), parts.disc.train()
            codebooks = codebook_snapshot(codec)  # the forward pass updates them; a skipped step restores them
            with accelerator.autocast():
                out = parts.model(wav, f0=f0 if config.loss.pitch_forcing else None)
            d_loss = discriminator_step(parts, wav, out.wav_hat, parts.adversarial_at(progress.step))
            stats = generator_step(parts, wav, out, target, parts.judging_at(progress.step), speaker, f0)
            if stats is None:
                skip_step(parts, codebooks)
                continue
            progress.step += 1
            step = progress.step
            meter.log_step(parts, wav, stats, d_loss, out.quantizer.metrics)
            if config.valid_every and step % config.valid_every == 0 and parts.valid and main:
                meter.log_validation(parts, step)
            cpu_clock.tick(codec)
            if step % config.checkpoint_every == 0 or step >= config.steps or stop[0] or cpu_clock.spent():
                saved_step = save_checkpoint(parts.checkpoints, accelerator, codec, run_dir, step)
        else:
            raise TrainingError("the data loader ended; training data is empty")
        if stop[0] and saved_step != progress.step:  # the signal came while waiting for data or in a skipped step
            saved_step = save_checkpoint(parts.checkpoints, accelerator, codec, run_dir, progress.step)
    meter.close()
    if stop[0] and main:
        log.warning("stopped by a signal at step %d; resume with --resume", progress.step)
    return run_dir / "model"


def prepare(config: TrainConfig, run_dir: Path, resume: bool) -> Parts:
    """Builds the run's parts, hands them to accelerate, and restores the newest checkpoint with ``resume``.

    The objects given to ``accelerator.prepare`` and ``register_for_checkpointing``
    and their order fix the checkpoint's file names: keep them so older runs still resume.

    Raises:
        TrainingError: ``resume`` without a checkpoint, or ``init`` of another architecture.
    """
    if config.threads:
        torch.set_num_threads(config.threads)
    accelerator = Accelerator(mixed_precision=config.mixed_precision)
    set_seed(config.seed)
    train_entries, valid_entries = split_entries(config.data)
    model, disc = Codec(config.model), Discriminators(config.disc)
    if config.init and not resume:
        initialize_from(model, config.init, decoder=config.init_decoder)
    semantic = None
    if config.semantic.teacher:
        with accelerator.main_process_first():
            semantic = build_semantic(config, train_entries, accelerator.is_main_process,
                                      reduce=lambda t: accelerator.reduce(t, "mean"),
                                      grad_scale=lambda: accelerator.scaler.get_scale() if accelerator.scaler else 1.0)
    opt_g, opt_d = _optimizers(config, model, disc, semantic)
    factor = lr_factor(config.optim, config.steps)
    sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, factor)
    sched_d = torch.optim.lr_scheduler.LambdaLR(opt_d, factor)
    model, disc, opt_g, opt_d, sched_g, sched_d = accelerator.prepare(model, disc, opt_g, opt_d, sched_g, sched_d)
    if semantic:
        semantic.head = accelerator.prepare(semantic.head)  # saved in checkpoints; not part of the exported codec
    codec, critic = accelerator.unwrap_model(model), accelerator.unwrap_model(disc)
    loss = config.loss
    weights = {"l1": loss.l1, "mel": loss.mel, "phase": loss.phase, "magnitude": loss.magnitude,
               "adversarial": loss.adversarial, "feature": loss.feature}
    balancer = Balancer(weights, loss.balancer_decay, reduce=lambda t: accelerator.reduce(t, "mean"))
    progress = Progress()
    if config.init and not resume:
        progress.cpu_s, progress.step = snapshot_origin(config.init)
        if config.cpu_budget_s and progress.cpu_s >= config.cpu_budget_s:
            raise TrainingError(
                f"cpu_budget_s={config.cpu_budget_s:g} is already spent: init={config.init!r} is a snapshot taken at "
                f"{progress.cpu_s:.0f} CPU s, and a branch continues its run's CPU clock; give the budget as that "
                f"clock's end, e.g. cpu_budget_s={progress.cpu_s + 3600:.0f} for one more CPU hour")
    accelerator.register_for_checkpointing(balancer, progress, *([semantic] if semantic else []))
    checkpoints = Checkpoints(run_dir / "checkpoints", config.keep_checkpoints)
    if resume:
        latest = checkpoints.latest()
        if latest is None:
            raise TrainingError(f"--resume: no checkpoint in {checkpoints.root}; start without --resume")
        accelerator.load_state(str(latest))
        log.info("resumed from %s at step %d", latest, progress.step)
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    return Parts(
        config=config, run_dir=run_dir, accelerator=accelerator, model=model, disc=disc, codec=codec, critic=critic,
        opt_g=opt_g, opt_d=opt_d, sched_g=sched_g, sched_d=sched_d, weights=weights, balancer=balancer,
        semantic=semantic, progress=progress, checkpoints=checkpoints,
        loader=make_loader(config, train_entries, accelerator, progress.step, semantic),
        valid=[load_excerpt(e, codec.sample_rate, config.data.valid_seconds)
               for e in valid_entries[: config.data.valid_items]],
        mel_loss=build_mel_loss(loss.mel_kind, codec.sample_rate, loss.mel_windows, loss.mel_bins, loss.mel_energy).to(
            accelerator.device),
        phase_loss=PhaseDerivativeLoss(loss.phase_windows, loss.phase_power).to(accelerator.device) if loss.phase > 0 else None,
        magnitude_loss=FrameMagnitudeLoss(codec.config.n_fft, codec.hop_length // codec.config.decoder_subframes)
        if loss.magnitude > 0 else None,
        adversarial=bool(config.disc.kinds) and (loss.adversarial > 0 or loss.feature > 0),
    )


def _optimizers(
    config: TrainConfig, model: Codec, disc: Discriminators, semantic: SemanticDistillation | None
) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """AdamW for the generator (with the semantic head) and for the critics."""
    optim = config.optim
    generator_params = [*model.parameters(), *(semantic.head.parameters() if semantic else [])]
    opt_g = torch.optim.AdamW(generator_params, optim.lr, optim.betas, weight_decay=optim.weight_decay)
    # Without critics (disc.kinds: []) the optimizer idles over one unused scalar: torch refuses an empty
    # optimizer, and this way every run prepares and checkpoints the same parts.
    disc_params = list(disc.parameters()) or [torch.nn.Parameter(torch.zeros(1))]
    opt_d = torch.optim.AdamW(disc_params, optim.disc_lr, optim.betas, weight_decay=optim.weight_decay)
    return opt_g, opt_d


def all_finite(accelerator: Accelerator, tensors: list[torch.Tensor]) -> bool:
    """Whether every value of ``tensors`` is finite on every process (so all processes skip a step together)."""
    bad = torch.stack([~torch.isfinite(t).all() for t in tensors]).any().float()
    return not bool(accelerator.reduce(bad, "max"))


def discriminator_step(parts: Parts, wav: torch.Tensor, wav_hat: torch.Tensor, adversarial: bool) -> torch.Tensor | None:
    """One critic update on real ``wav`` and generated ``wav_hat`` (both ``[B, 1, T]``); returns its loss.

    Returns ``None`` when the critics do not train at this step: before ``disc.start_step``,
    when the ``disc.update_prob`` draw says no, or when ``wav_hat`` holds NaN/Inf
    (the generator step then skips too). The critics' schedule advances either way.
    """
    config, accelerator = parts.config, parts.accelerator
    d_loss = None
    if adversarial and torch.rand(()) < config.disc.update_prob and all_finite(accelerator, [wav_hat]):
        with accelerator.autocast():
            both = parts.disc(torch.cat([wav, wav_hat.detach()]))  # real and fake in one pass
            real = [(lg.chunk(2)[0], [f.chunk(2)[0] for f in fs]) for lg, fs in both]
            fake = [(lg.chunk(2)[1], [f.chunk(2)[1] for f in fs]) for lg, fs in both]
            d_loss = discriminator_loss(real, fake, config.loss.adversarial_kind)
        parts.opt_d.zero_grad(set_to_none=True)
        accelerator.backward(d_loss)
        if config.optim.grad_clip:
            accelerator.clip_grad_norm_(parts.disc.parameters(), config.optim.grad_clip)
        parts.opt_d.step()
    parts.sched_d.step()
    return d_loss


def split_batch(
    batch: torch.Tensor | list[torch.Tensor], semantic: SemanticDistillation | None
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Crops, teacher targets and speaker indices of a batch of :func:`make_loader` (``None``: not in this run)."""
    if semantic is None:
        return batch, None, None
    if semantic.speakers:
        wav, target, speaker = batch
        return wav, target, speaker
    return batch[0], batch[1], None


def generator_step(
    parts: Parts, wav: torch.Tensor, out: CodecOutput, target: torch.Tensor | None, adversarial: bool,
    speaker: torch.Tensor | None = None, f0: torch.Tensor | None = None,
) -> GeneratorStats | None:
    """One generator update from the forward pass ``out`` of ``wav`` ``[B, 1, T]``.

    Args:
        parts: The run.
        wav: The batch.
        out: ``parts.model(wav)``.
        target: Teacher targets ``[B, L', F, D_t]`` with semantic distillation, else ``None``.
        adversarial: Whether the critics judge the generator at this step.
        speaker: Speaker indices ``[B]`` of the crops, with the semantic speaker adversary.
        f0: Tracked fundamentals ``[B, F]`` (Hz, 0 = unvoiced), the targets of ``loss.pitch``.

    Returns:
        The step's losses, or ``None`` if one is NaN/Inf: then nothing is updated.
    """
    config, accelerator, loss, wav_hat = parts.config, parts.accelerator, parts.config.loss, out.wav_hat
    with accelerator.autocast():
        losses = {"mel": parts.mel_loss(wav_hat, wav)}
        if loss.l1 > 0:  # DAC trains without it; skipping saves its backward pass in the balancer
            losses["l1"] = F.l1_loss(wav_hat, wav)
        if parts.phase_loss is not None:
            losses["phase"] = parts.phase_loss(wav_hat, wav)
        if parts.magnitude_loss is not None:
            losses["magnitude"] = parts.magnitude_loss(out.log_magnitude, wav)
        if f0 is not None:
            losses["pitch"] = pitch_loss(out.pitch, f0)
        if adversarial:
            fake = parts.critic(wav_hat)
            with torch.no_grad():
                real = parts.critic(wav)
            losses["adversarial"] = generator_adversarial_loss(fake, loss.adversarial_kind)
            losses["feature"] = feature_matching_loss(real, fake)
        if parts.semantic:
            device = accelerator.device
            losses |= parts.semantic.loss(out.quantizer, target.to(device),
                                          None if speaker is None else speaker.to(device))
    commitment = out.quantizer.commitment_loss
    parts.opt_g.zero_grad(set_to_none=True)
    if not all_finite(accelerator, [*losses.values(), commitment]):
        return None
    if loss.balancer and out.log_magnitude is None:
        objective = parts.balancer.surrogate(losses, wav_hat)
    elif loss.balancer:  # balanced where every gradient to the generator passes, on the waveform's scale
        scale, mel_grad = waveform_to(losses["mel"], wav_hat, out.log_magnitude, parts.balancer.reduce)
        objective = parts.balancer.surrogate(losses, out.log_magnitude, scale, known={"mel": mel_grad})
    else:
        objective = sum(parts.weights[k] * v for k, v in losses.items() if k in parts.weights)
    if parts.semantic:
        objective = objective + parts.semantic.surrogate(losses, parts.weights)
    if f0 is not None:
        objective = objective + loss.pitch * losses["pitch"]
    accelerator.backward(objective + loss.commitment * commitment)
    grad_norm = accelerator.clip_grad_norm_(parts.model.parameters(), config.optim.grad_clip or float("inf"))
    parts.opt_g.step()
    parts.sched_g.step()
    return GeneratorStats(losses, commitment, grad_norm)


def waveform_to(loss: torch.Tensor, wav_hat: torch.Tensor, x_hat: torch.Tensor,
                reduce: Callable[[torch.Tensor], torch.Tensor]) -> tuple[float, torch.Tensor]:
    """How much longer ``loss``'s gradient is at ``x_hat`` than at ``wav_hat``, a function of ``x_hat``
    (per-item norms, averaged over the batch), and that gradient at ``x_hat`` (for the balancer, which
    would otherwise compute it again).

    The balancer gives its losses a gradient of norm 1 at the point it balances.
    At the waveform that is EnCodec's scale, which the commitment loss and the
    gradient clipping are set for; at a recovered-phase decoder's log-magnitudes
    (``[B, S, K]``, on another scale) a norm of 1 gave parameter gradients a
    thousand times larger, clipped every step, and the encoder drifted from its
    codebooks (commitment loss 0.2 to 100 in 2,000 steps). Scaled by this
    ratio, a loss of the waveform alone gets the gradient that balancing at the
    waveform would give it (exactly, while its norm stays at its average).
    """
    at_wav, at_x = torch.autograd.grad(loss, (wav_hat, x_hat), retain_graph=True)
    ratio = at_x.flatten(1).norm(dim=1).mean() / at_wav.flatten(1).norm(dim=1).mean().clamp(min=1e-12)
    return float(reduce(ratio.detach())), at_x


def skip_step(parts: Parts, codebooks: dict[str, torch.Tensor]) -> None:
    """Counts a step skipped for NaN/Inf losses and puts back the codebooks its forward pass moved.

    Raises:
        TrainingError: After more than ``max_bad_steps`` such steps.
    """
    progress, limit = parts.progress, parts.config.max_bad_steps
    progress.bad_steps += 1
    restore_codebooks(parts.codec, codebooks)
    log.warning("non-finite loss at step %d (%d so far); step skipped", progress.step, progress.bad_steps)
    if progress.bad_steps > limit:
        raise TrainingError(f"more than {limit} steps had NaN/Inf losses; lower optim.lr")


class Meter:
    """The progress bar with throughput, and TensorBoard scalars, audio and spectrograms (main process only)."""

    def __init__(self, parts: Parts, quiet: bool) -> None:
        main = parts.accelerator.is_main_process
        self.writer = _summary_writer(parts.run_dir) if main else None
        self.bar = tqdm(total=parts.config.steps, initial=parts.progress.step, disable=quiet or not main,
                        dynamic_ncols=True)
        self.tick, self.seen_s = time.perf_counter(), 0.0

    def log_step(self, parts: Parts, wav: torch.Tensor, stats: GeneratorStats, d_loss: torch.Tensor | None,
                 codebook_metrics: dict[str, float]) -> None:
        """Advances the bar; every ``log_every`` steps writes losses, shares, rates and codebook use."""
        config, step = parts.config, parts.progress.step
        self.seen_s += wav.shape[0] * config.data.segment_s * parts.accelerator.num_processes
        rate = self.seen_s / (time.perf_counter() - self.tick)
        values = {k: float(v.detach()) for k, v in stats.losses.items()}
        self.bar.update(1)
        self.bar.set_postfix(mel=f"{values['mel']:.3f}", audio_s_per_s=f"{rate:.1f}")
        if not self.writer or step % config.log_every:
            return
        scalars = {f"loss/{k}": v for k, v in values.items()}
        scalars |= {"loss/commitment": float(stats.commitment.detach()), "grad_norm": float(stats.grad_norm),
                    "lr": parts.sched_g.get_last_lr()[0], "audio_s_per_s": rate, "cpu_s": parts.progress.cpu_s}
        if d_loss is not None:
            scalars["loss/discriminator"] = float(d_loss.detach())
        scalars |= {f"share/{k}": v for k, v in parts.balancer.last_shares.items()}
        if parts.semantic and config.loss.balancer:
            scalars["share/semantic"] = parts.semantic.last_share
            if parts.semantic.speakers:
                scalars["share/speaker"] = parts.semantic.last_speaker_share
        scalars |= {f"codebook/{k}": v for k, v in codebook_metrics.items()}
        for k, v in scalars.items():
            self.writer.add_scalar(k, v, step)

    def log_validation(self, parts: Parts, step: int) -> None:
        """Writes :func:`validate`'s measures, audio and spectrograms; prints the mel distances."""
        results = validate(parts.codec, parts.valid, parts.mel_loss)
        for k, v in results.items():
            self.writer.add_scalar(f"valid/{k}", v, step)
        _log_audio(self.writer, parts.codec, parts.valid, step)
        tqdm.write(f"step {step}: " + " ".join(f"{k}={v:.3f}" for k, v in results.items() if "mel" in k))

    def close(self) -> None:
        """Closes the bar and flushes TensorBoard."""
        self.bar.close()
        if self.writer:
            self.writer.close()


class CPUClock:
    """Counts the training process's CPU seconds into ``progress.cpu_s``; saves snapshots and ends the budget.

    ``time.process_time`` sums the CPU time of every thread of this process,
    so two runs at equal ``cpu_s`` had equal compute however busy the machine
    was (data workers are other processes: run budgeted comparisons with
    ``data.num_workers: 0``). Snapshots go to ``run_dir/snapshots/cpu-<mark>s``
    with a line per snapshot in ``run_dir/snapshots/index.jsonl`` (its mark, the exact CPU seconds and the step).
    """

    def __init__(self, progress: Progress, config: TrainConfig, run_dir: Path | None) -> None:
        self.progress, self.config, self.run_dir = progress, config, run_dir
        self.last = time.process_time()

    def spent(self) -> bool:
        """Whether the CPU budget is used up."""
        return bool(self.config.cpu_budget_s) and self.progress.cpu_s >= self.config.cpu_budget_s

    def tick(self, codec: Codec) -> None:
        """Adds the CPU time since the last tick; saves a snapshot of ``codec`` when one falls due."""
        now = time.process_time()
        before, self.progress.cpu_s = self.progress.cpu_s, self.progress.cpu_s + now - self.last
        self.last = now
        every = self.config.snapshot_every_cpu_s
        if not every or self.run_dir is None or int(self.progress.cpu_s // every) == int(before // every):
            return
        mark = round(self.progress.cpu_s // every * every, 3)
        folder, name = self.run_dir / "snapshots", f"cpu-{mark:g}s"
        codec.save_pretrained(folder / name)
        record = {"cpu_s": mark, "cpu_s_at_save": round(self.progress.cpu_s, 1), "step": self.progress.step,
                  "snapshot": name}
        with open(folder / "index.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def save_checkpoint(checkpoints: Checkpoints, accelerator: Accelerator, codec: Codec, run_dir: Path, step: int) -> int:
    """Saves the training state at ``step`` and exports the generator to ``run_dir / "model"``; returns ``step``."""
    checkpoints.save(accelerator, step)
    if accelerator.is_main_process:
        codec.save_pretrained(run_dir / "model")
    return step


def codebook_snapshot(codec: Codec) -> dict[str, torch.Tensor]:
    """Copies of every quantizer buffer (codebooks, EMA statistics, restart counts)."""
    return {k: v.detach().clone() for k, v in codec.quantizer.state_dict().items()}


def restore_codebooks(codec: Codec, snapshot: dict[str, torch.Tensor]) -> None:
    """Puts back the quantizer buffers of :func:`codebook_snapshot`, undoing a forward pass's EMA update."""
    codec.quantizer.load_state_dict(snapshot)


@torch.no_grad()
def validate(codec: Codec, clips: list[torch.Tensor], mel_loss: torch.nn.Module) -> dict[str, float]:
    """Mel distance and SI-SDR per bandwidth on validation clips, and codebook perplexity at full rate."""
    codec.eval()
    results: dict[str, float] = {}
    device = next(codec.parameters()).device
    for kbps in codec.bandwidths_kbps:
        mels, sdrs = [], []
        for wav in clips:
            x = wav[None].to(device)  # [1, 1, T]
            y = codec.decode(codec.encode(x, bandwidth_kbps=kbps))
            mels.append(float(mel_loss(y, x)))
            sdrs.append(float(si_sdr_db(x, y).mean()))
        results[f"mel@{kbps:g}kbps"] = sum(mels) / len(mels)
        results[f"sisdr@{kbps:g}kbps"] = sum(sdrs) / len(sdrs)
    codes = torch.cat([codec.encode(w[None].to(device)).codes for w in clips], dim=-1)  # [1, n_q, sum F]
    for level in range(codes.shape[1]):
        counts = torch.bincount(codes[0, level], minlength=codec.config.codebook_size)
        results[f"perplexity/{level + 1}"] = float(perplexity(counts))
    codec.train()
    return results


def _summary_writer(run_dir: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(run_dir / "tensorboard"))


def _log_audio(writer, codec: Codec, clips: list[torch.Tensor], step: int, near_kbps: float = 2.0) -> None:
    """Audio and spectrograms (one colour scale) of the first two clips: original, near 2 kbps, all codebooks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from codec import spectrogram

    device = next(codec.parameters()).device
    low = min(codec.bandwidths_kbps, key=lambda kbps: abs(kbps - near_kbps))
    codec.eval()
    for i, wav in enumerate(clips[:2]):
        signals = {"reference": wav[0].cpu()}  # name -> [T]
        for kbps in dict.fromkeys((low, codec.bandwidths_kbps[-1])):
            with torch.no_grad():
                y = codec.decode(codec.encode(wav[None].to(device), bandwidth_kbps=kbps))  # [1, 1, T]
            signals[f"{kbps:g}kbps"] = y[0, 0].cpu()
        vmin, vmax = spectrogram.colour_range_db([signals["reference"]], codec.sample_rate)
        fig, axes = plt.subplots(len(signals), 1, figsize=(6, 2.2 * len(signals)), squeeze=False)
        for ax, (name, y) in zip(axes[:, 0], signals.items()):
            writer.add_audio(f"clip{i}/{name}", y[None].clamp(-1, 1), step, sample_rate=codec.sample_rate)
            spectrogram.draw(ax, y, codec.sample_rate, vmin, vmax, f"clip {i}: {name}, step {step}")
        fig.tight_layout()
        writer.add_figure(f"clip{i}/spectrogram", fig, step)
        plt.close(fig)
    codec.train()
