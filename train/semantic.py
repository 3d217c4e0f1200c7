"""Semantic distillation: a frozen teacher's features taught to the first codebook.

As in SpeechTokenizer (Zhang et al. 2023, arXiv 2308.16692), a linear head
reads the first RVQ level's quantized latent ``q1`` [B, D, F] and is trained
to predict the teacher's features of the same frames, so that codebook 1
carries content and the later codebooks what is left: voice and acoustics.
The teacher runs only before training: its targets are cached on disk, one
safetensors file per audio file, at the codec's frame rate
(:class:`TargetCache`), and each training crop comes with its frames.

Losses (``semantic.loss``), for head output ``A`` and target ``S``, both [B, F, D_t]:

- ``d_axis``: SpeechTokenizer's "D-axis" loss ``-mean_d log sigmoid(cos(A[:, :, d], S[:, :, d]))``,
  each feature dimension compared along time;
- ``cosine``: ``mean_t (1 - cos(A[:, t], S[:, t]))``, each frame compared across dimensions;
- ``ce``: cross-entropy of unit logits against the nearest of ``semantic.units``
  k-means centroids of the teacher's features (HuBERT's targets), or, for a
  teacher of class ids (``phones``), against its ids: nothing is fitted.

Balancing. The waveform losses are balanced at the decoded waveform
(:mod:`train.balancer`); the semantic loss is not a function of it. Both
reach the encoder through straight-through latents: the waveform losses
through the quantized latent ``q`` the decoder reads, the semantic loss
through ``q1``. So the semantic gradient is scaled where the two can be
compared, in the latent space:

    g_sem = (w_s / W) * EMA(||dL_wave/dq||) * (dL_s/dq1) / EMA(||dL_s/dq1||)

with ``w_s = semantic.weight``, ``W`` the sum of the weights of the waveform
losses of the step, and norms per batch item (averaged over the batch and
over processes). The second factor is a :class:`~train.balancer.Balancer` of
its own; the waveform gradient's norm at ``q`` is read by a hook during the
backward pass and used from the next step on (the first step sends no
semantic gradient to the encoder). At the encoder output the semantic
gradient is thus ``w_s / W`` times as large as the waveform losses' gradient,
whatever the two losses' raw scales. ``g_sem`` is applied with the surrogate
``sum(q1 * sg(g_sem))`` in the same ``accelerator.backward`` call; the head
itself learns from the raw loss. Without the balancer (``loss.balancer:
false``) the encoder gets ``w_s * dL_s/dq1``.

Speaker adversary (``semantic.speaker_weight``, ``w_a``). Codebook 1 should
carry what is said, not who says it. A small classifier
(:class:`SpeakerClassifier`) learns each crop's speaker from ``q1`` (the
mean and deviation of its frames) by cross-entropy ``L_a``, and the encoder
gets that gradient reversed (Ganin and Lempitsky 2015, gradient reversal),
balanced in the same way:

    g_a = -(w_a / W) * EMA(||dL_wave/dq||) * (dL_a/dq1) / EMA(||dL_a/dq1||)

so the encoder moves ``q1`` where the classifier can tell speakers apart
least, while the semantic loss keeps the content in it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm import tqdm

from codec.atomic import atomic_write, write_json
from codec.audio import load
from codec.errors import ConfigError
from codec.network.config import CodecConfig
from codec.network.quantization import QuantizerOutput, kmeans
from train.balancer import Balancer
from train.config import SemanticConfig, TrainConfig
from train.data import AudioEntry, is_shard_source, manifest_speakers
from train.teachers import Teacher, align_frames, align_labels, load_teacher, teacher_id

log = logging.getLogger(__name__)

#: Bumped when the cached targets change meaning; part of the cache key.
CACHE_FORMAT = 1
#: Frames fed to k-means: at most this many values (frames x dimensions), so that fitting stays in memory.
UNIT_FIT_VALUES = 2_000_000


def select_layers(hidden: Tensor, layer: int | str) -> Tensor:
    """The target layers of ``hidden`` [L, F, D]: ``[1, F, D]`` for a layer number or ``"avg"``, all for ``"mix"``.

    Raises:
        ConfigError: If the layer number is not one of the ``L`` layers.
    """
    if layer == "mix":
        return hidden
    if layer == "avg":
        return hidden.mean(0, keepdim=True)
    n_layers = hidden.shape[0]
    if not 1 <= abs(layer) <= n_layers:
        raise ConfigError(f"semantic.layer {layer} does not exist: the teacher has layers 1 to {n_layers}")
    return hidden[[layer - 1 if layer > 0 else layer]]


class TargetCache:
    """Teacher targets of each audio file at the codec frame rate, one safetensors file per audio file.

    Files live in ``cache_dir / KEY / HASH.safetensors``: ``KEY`` hashes the
    teacher, the layer choice and the codec's rate and hop; ``HASH`` hashes the
    audio file's path. Each holds ``target`` [L', F, D_t] in float16 (``L' = 1``
    except for ``layer: mix``), ``F = ceil(samples at the codec rate / hop)``;
    a teacher of class ids stores them as ``[1, F, 1]`` (exact in float16 up to 2048).
    A directory teacher is known by its path: after replacing the weights in
    it, delete its cache folder.

    Args:
        config: The teacher and layer.
        model: The codec's rate and hop.
    """

    def __init__(self, config: SemanticConfig, model: CodecConfig) -> None:
        self.teacher, self.layer = config.teacher, config.layer
        self.sample_rate, self.hop_length = model.sample_rate, model.hop_length
        key = {"teacher": teacher_id(config.teacher), "layer": config.layer, "sample_rate": model.sample_rate,
               "hop_length": model.hop_length, "format": CACHE_FORMAT}
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        self.root = Path(config.cache_dir).expanduser() / digest
        self.key = key

    def file_of(self, path: str) -> Path:
        """The cache file of the audio file ``path``."""
        return self.root / (hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:20] + ".safetensors")

    def fill(self, entries: list[AudioEntry]) -> None:
        """Runs the teacher on every file not cached yet (the teacher is loaded only if one is missing)."""
        missing = [e for e in entries if not self.file_of(e.path).is_file()]
        if not (self.root / "teacher.json").is_file():
            missing = missing or entries[:1]  # the first file again, to record the targets' shape
        if not missing:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        with torch.random.fork_rng():  # building a teacher draws random numbers; a cached run draws none
            teacher = load_teacher(self.teacher)
        for entry in tqdm(missing, desc="teacher targets", unit="file", disable=None):  # no bar in logs
            target = self.compute(teacher, entry).to(torch.float16).contiguous()
            atomic_write(self.file_of(entry.path), lambda p, t=target: save_file({"target": t}, p))
        info = self.key | {"layers": target.shape[0], "dim": target.shape[-1], "classes": teacher.classes}
        write_json(self.root / "teacher.json", info)

    def compute(self, teacher: Teacher, entry: AudioEntry) -> Tensor:
        """The target ``[L', F, D_t]`` of one file, aligned to the codec's frames (see :func:`align_frames`).

        The teacher hears the file's channels mixed to mono, resampled to its own rate.
        """
        wav, _ = load(entry.path, target_rate=teacher.sample_rate, mono=True)  # [1, T]
        hidden = select_layers(teacher.hidden_states(wav[0]), self.layer)  # [L', F_t, D_t]
        samples = math.ceil(entry.frames * self.sample_rate / entry.sample_rate)
        frame_rate_hz = self.sample_rate / self.hop_length
        align = align_labels if teacher.classes else align_frames  # ids are picked, features averaged
        return align(hidden.float(), teacher.frame_rate_hz, frame_rate_hz, math.ceil(samples / self.hop_length))

    @property
    def shape(self) -> tuple[int, int]:
        """``(L', D_t)``: stored layers and feature dimension (after :meth:`fill`)."""
        info = json.loads((self.root / "teacher.json").read_text())
        return int(info["layers"]), int(info["dim"])

    @property
    def classes(self) -> int:
        """The number of classes of a teacher of class ids, 0 for one of features (after :meth:`fill`)."""
        return int(json.loads((self.root / "teacher.json").read_text()).get("classes", 0))

    def frames(self, path: str, first: int, count: int) -> Tensor:
        """Target frames ``first .. first + count - 1`` of ``path``: ``[L', count, D_t]`` float32.

        Frames past the end of the file (a file shorter than a crop, which the
        crop zero-pads) repeat the file's last frame.
        """
        with safe_open(str(self.file_of(path)), framework="pt") as f:
            stored = f.get_slice("target")
            total = stored.get_shape()[1]
            start = min(first, total - 1)
            target = stored[:, start : min(first + count, total)].float()
        if target.shape[1] < count:
            target = torch.cat([target, target[:, -1:].expand(-1, count - target.shape[1], -1)], dim=1)
        return target

    def units(self, entries: list[AudioEntry], config: SemanticConfig) -> Tensor:
        """K-means centroids ``[K, D_t]`` of the targets of ``units_files`` files, fitted once and saved.

        The files are the first by a hash of their path: a fixed sample spread over every source and speaker.
        """
        paths = sorted((e.path for e in entries), key=lambda p: hashlib.sha1(p.encode()).digest())[: config.units_files]
        digest = hashlib.sha1("\n".join(paths).encode()).hexdigest()[:8]
        file = self.root / f"units-{config.units}-{config.units_iters}-{digest}.safetensors"
        if file.is_file():
            return load_file(file)["centroids"]
        frames = torch.cat([load_file(self.file_of(p))["target"][0].float() for p in paths])  # [N, D_t]
        with torch.random.fork_rng():
            torch.manual_seed(0)
            frames = frames[torch.randperm(len(frames))[: UNIT_FIT_VALUES // frames.shape[1]]]
            centroids, _ = kmeans(frames, config.units, config.units_iters)
        atomic_write(file, lambda p: save_file({"centroids": centroids.contiguous()}, p))
        log.info("fitted %d k-means units on %d frames of %d files: %s", config.units, len(frames), len(paths), file)
        return centroids


def d_axis_loss(pred: Tensor, target: Tensor) -> Tensor:
    """SpeechTokenizer's D-axis loss of ``pred`` and ``target`` [B, F, D]: each dimension's cosine along time."""
    cosine = F.cosine_similarity(pred, target, dim=1)  # [B, D]
    return -F.logsigmoid(cosine).mean()


def cosine_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean per-frame cosine distance of ``pred`` and ``target`` [B, F, D]."""
    return (1 - F.cosine_similarity(pred, target, dim=-1)).mean()


class SpeakerClassifier(nn.Module):
    """Speaker logits of a crop from the statistics of its first-level latent (x-vector pooling).

    Args:
        dim: The codec's latent dimension ``D``.
        speakers: Number of training speakers.
        hidden: Width of the hidden layer.
    """

    def __init__(self, dim: int, speakers: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * dim, hidden), nn.ReLU(), nn.Linear(hidden, speakers))

    def forward(self, first_quantized: Tensor) -> Tensor:
        """Logits ``[B, speakers]`` of ``first_quantized`` [B, D, F]."""
        pooled = torch.cat([first_quantized.mean(-1), first_quantized.std(-1, unbiased=False)], dim=-1)  # [B, 2D]
        return self.net(pooled)

    def loss(self, first_quantized: Tensor, speaker: Tensor) -> Tensor:
        """Cross-entropy against ``speaker`` [B] (index -1: unknown, left out; 0 if all are unknown)."""
        logits, known = self(first_quantized), speaker >= 0
        if not bool(known.any()):
            return logits.sum() * 0.0
        return F.cross_entropy(logits[known], speaker[known])


class SemanticHead(nn.Module):
    """A linear map of the first codebook's latent to the teacher's features (or unit logits), and its loss.

    Args:
        dim: The codec's latent dimension ``D``.
        target_dim: The teacher's feature dimension ``D_t``.
        loss: ``"d_axis"``, ``"cosine"`` or ``"ce"``.
        n_layers: Teacher layers per target frame; more than one are mixed
            with learned softmax weights (``layer: mix``).
        centroids: K-means units ``[K, D_t]``, for ``"ce"`` on a teacher of features.
        classes: ``K``, for ``"ce"`` on a teacher of class ids (targets ``[B, 1, F, 1]`` hold the ids).
        speakers: Training speakers, for a speaker adversary (:class:`SpeakerClassifier`); 0 for none.

    Raises:
        ConfigError: Unless ``"ce"`` gets exactly one of ``centroids`` and ``classes``, and the others neither.
    """

    def __init__(
        self, dim: int, target_dim: int, loss: str, n_layers: int = 1, centroids: Tensor | None = None,
        classes: int = 0, speakers: int = 0,
    ) -> None:
        super().__init__()
        if (loss == "ce") != ((centroids is not None) != (classes > 0)):
            raise ConfigError(
                "the 'ce' semantic loss needs k-means centroids or a teacher of class ids (phones), and only it does"
            )
        self.loss, self.classes = loss, classes
        self.proj = nn.Linear(dim, classes or (target_dim if centroids is None else centroids.shape[0]))
        self.layer_logits = nn.Parameter(torch.zeros(n_layers)) if n_layers > 1 else None
        if centroids is not None:
            self.register_buffer("centroids", centroids.float())
        self.speaker = SpeakerClassifier(dim, speakers) if speakers else None

    def target(self, teacher: Tensor) -> Tensor:
        """The target ``[B, F, D_t]`` of teacher frames ``[B, L', F, D_t]`` (the learned layer mix if ``L' > 1``)."""
        if self.layer_logits is None:
            return teacher[:, 0]
        return torch.einsum("l,blfd->bfd", self.layer_logits.softmax(0), teacher)

    def forward(self, first_quantized: Tensor, teacher: Tensor, speaker: Tensor | None = None) -> Tensor:
        """The loss of the head on ``first_quantized`` [B, D, F] against teacher frames ``[B, L', F, D_t]``.

        With ``speaker`` (indices [B], for a head built with ``speakers``), a ``[2]`` tensor: the semantic
        loss and the speaker classifier's (both computed in this call, as data-parallel wrappers need).
        """
        semantic = self.semantic_loss(first_quantized, teacher)
        if speaker is None:
            return semantic
        if self.speaker is None:
            raise ConfigError("this semantic head has no speaker classifier: build it with speakers > 0")
        return torch.stack([semantic, self.speaker.loss(first_quantized, speaker)])

    def semantic_loss(self, first_quantized: Tensor, teacher: Tensor) -> Tensor:
        """The distillation loss alone (see :meth:`forward`)."""
        pred = self.proj(first_quantized.transpose(1, 2))  # [B, F, D_t or K]
        target = self.target(teacher)  # [B, F, D_t]
        if self.loss == "ce":
            if self.classes:
                units = target[..., 0].round().long()  # [B, F]: the teacher's ids
            else:
                units = torch.cdist(target, self.centroids[None]).argmin(-1)  # [B, F]: the nearest unit
            return F.cross_entropy(pred.transpose(1, 2), units)
        return d_axis_loss(pred, target) if self.loss == "d_axis" else cosine_loss(pred, target)


class SemanticDistillation:
    """The head, the targets, and the gradient the semantic loss sends to the encoder (see the module docstring).

    Args:
        head: The projection head (the loop replaces it by what ``accelerator.prepare`` returns).
        targets: The cached teacher targets.
        weight: ``w_s``.
        balanced: Scale the gradient as in the module docstring; else ``w_s`` times the raw gradient.
        decay: EMA decay of the gradient norms.
        reduce: Averages a tensor over processes.
        grad_scale: The mixed-precision loss scale in effect (gradients seen by the hook carry it).
        speakers: The speaker index of each training file, for the speaker adversary (``None``: none).
        speaker_weight: ``w_a``.
    """

    def __init__(
        self,
        head: nn.Module,
        targets: TargetCache,
        weight: float,
        balanced: bool = True,
        decay: float = 0.999,
        reduce: Callable[[Tensor], Tensor] | None = None,
        grad_scale: Callable[[], float] | None = None,
        speakers: dict[str, int] | None = None,
        speaker_weight: float = 0.0,
    ) -> None:
        self.head, self.targets, self.weight, self.balanced, self.decay = head, targets, weight, balanced, decay
        self.speakers, self.speaker_weight = speakers, speaker_weight
        self.balancers = {name: Balancer({name: 1.0}, decay, reduce=reduce) for name in ("semantic", "speaker")}
        self.reduce = reduce or (lambda t: t)
        self.grad_scale = grad_scale or (lambda: 1.0)
        self.latent_norm_sum = self.latent_weight_sum = 0.0  # bias-corrected EMA of ||dL_wave/dq||
        self.pending_norm: float | None = None  # measured in the last backward pass, not yet in the EMA
        self.last_share = self.last_speaker_share = 0.0
        self._first: Tensor | None = None
        self._leaf: Tensor | None = None

    def loss(self, quantizer: QuantizerOutput, teacher: Tensor, speaker: Tensor | None = None) -> dict[str, Tensor]:
        """The head's losses on this step's first-level latent; registers the hook that measures ``||dL_wave/dq||``.

        Args:
            quantizer: The codec's training-pass quantizer output.
            teacher: Target frames ``[B, L', F, D_t]``.
            speaker: Speaker indices ``[B]`` of the crops, with a speaker adversary.

        Returns:
            ``"semantic"``, and ``"speaker"`` (the classifier's cross-entropy) with ``speaker``.
        """
        self._first = quantizer.first_quantized  # [B, D, F]
        self._leaf = self._first.detach().requires_grad_()
        if self.balanced and quantizer.quantized.requires_grad:
            quantizer.quantized.register_hook(self._measure)
        if speaker is None:
            return {"semantic": self.head(self._leaf, teacher)}
        semantic, adversary = self.head(self._leaf, teacher, speaker).unbind()
        return {"semantic": semantic, "speaker": adversary}

    def _measure(self, grad: Tensor) -> None:
        self.pending_norm = float(grad.detach().flatten(1).norm(dim=1).mean()) / self.grad_scale()

    def surrogate(self, losses: dict[str, Tensor], weights: dict[str, float]) -> Tensor:
        """A scalar whose gradient trains the head (and the speaker classifier) and sends ``g_sem`` (and
        ``g_a``) to the encoder.

        Args:
            losses: This step's losses, with what :meth:`loss` returned.
            weights: Weights of the waveform losses (those in ``losses`` count in ``W``).
        """
        own = {"semantic": losses["semantic"]} | ({"speaker": losses["speaker"]} if "speaker" in losses else {})
        signs = {"semantic": self.weight, "speaker": -self.speaker_weight}  # the speaker gradient is reversed
        head_loss = sum(own.values())
        if not self.balanced:
            grad = sum(signs[k] * torch.autograd.grad(v, self._leaf, retain_graph=True)[0] for k, v in own.items())
            return (self._first * grad.detach()).sum() + head_loss
        self._update_latent_norm()
        waveform_weight = sum(w for k, w in weights.items() if k in losses and w > 0) or 1.0
        latent_norm = self.latent_norm_sum / self.latent_weight_sum if self.latent_weight_sum else 0.0
        grad = torch.zeros_like(self._leaf)
        for name, loss in own.items():
            unit = self.balancers[name].gradient({name: loss}, self._leaf)  # EMA norm 1
            part = unit * (signs[name] / waveform_weight * latent_norm)
            applied = float(self.reduce(part.flatten(1).norm(dim=1).mean().detach()))
            share = applied / (applied + latent_norm) if latent_norm else 0.0
            if name == "semantic":
                self.last_share = share
            else:
                self.last_speaker_share = share
            grad = grad + part
        return (self._first * grad.detach()).sum() + head_loss

    def _update_latent_norm(self) -> None:
        if self.pending_norm is None:
            return
        norm = float(self.reduce(torch.tensor(self.pending_norm)))
        self.pending_norm = None
        if math.isfinite(norm):
            self.latent_norm_sum = self.decay * self.latent_norm_sum + norm
            self.latent_weight_sum = self.decay * self.latent_weight_sum + 1.0

    def state_dict(self) -> dict:
        """Norm EMAs, for checkpoints."""
        return {"balancer": self.balancers["semantic"].state_dict(),
                "speaker_balancer": self.balancers["speaker"].state_dict(), "latent_norm_sum": self.latent_norm_sum,
                "latent_weight_sum": self.latent_weight_sum, "pending_norm": self.pending_norm}

    def load_state_dict(self, state: dict) -> None:
        """Restores :meth:`state_dict`."""
        self.balancers["semantic"].load_state_dict(state["balancer"])
        if "speaker_balancer" in state:  # checkpoints from before the speaker adversary have none
            self.balancers["speaker"].load_state_dict(state["speaker_balancer"])
        self.latent_norm_sum = float(state["latent_norm_sum"])
        self.latent_weight_sum = float(state["latent_weight_sum"])
        self.pending_norm = state["pending_norm"]


def build_semantic(
    config: TrainConfig,
    entries: list[AudioEntry],
    is_main: bool,
    reduce: Callable[[Tensor], Tensor] | None = None,
    grad_scale: Callable[[], float] | None = None,
) -> SemanticDistillation:
    """Caches the teacher's targets of the training ``entries`` (main process) and builds the head.

    Call it inside ``accelerator.main_process_first()`` so that the other
    processes find the cache filled.

    Raises:
        ConfigError: With WebDataset shards, or crops that are not whole frames.
    """
    if any(is_shard_source(s) for s in config.data.train):
        raise ConfigError("semantic distillation needs files (folders or manifests) in data.train, not shards")
    rate, hop = config.model.sample_rate, config.model.hop_length
    segment = round(config.data.segment_s * rate)
    if segment % hop:
        raise ConfigError(
            f"semantic distillation needs crops of whole frames: data.segment_s * sample_rate = {segment} samples "
            f"is not a multiple of the hop ({hop}); choose data.segment_s = {max(segment // hop, 1) * hop / rate:g}"
        )
    speakers = speaker_indices(config.data.train) if config.semantic.speaker_weight else None
    targets = TargetCache(config.semantic, config.model)
    if is_main:
        targets.fill(entries)
    n_layers, target_dim = targets.shape
    classes = targets.classes  # a teacher of class ids needs no k-means units
    centroids = targets.units(entries, config.semantic) if config.semantic.loss == "ce" and not classes else None
    head = SemanticHead(config.model.dimension, target_dim, config.semantic.loss, n_layers, centroids, classes,
                        speakers=len(set(speakers.values())) if speakers else 0)
    return SemanticDistillation(head, targets, config.semantic.weight, config.loss.balancer,
                                config.loss.balancer_decay, reduce, grad_scale, speakers,
                                config.semantic.speaker_weight)


def speaker_indices(sources: list[str]) -> dict[str, int]:
    """The speaker index of each training file (speakers sorted by name), from the manifests among ``sources``.

    Raises:
        ConfigError: If they name fewer than two speakers.
    """
    names = manifest_speakers(sources)
    speakers = sorted(set(names.values()))
    if len(speakers) < 2:
        raise ConfigError(
            f"semantic.speaker_weight needs at least two speakers, and data.train names {len(speakers)}: list the "
            'training files in JSON Lines manifests whose rows have a "speaker" key'
        )
    index = {name: i for i, name in enumerate(speakers)}
    return {path: index[name] for path, name in names.items()}
