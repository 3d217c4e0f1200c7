"""Training configuration: frozen dataclasses loaded from small YAML files.

A config file has one section per dataclass below (``model``, ``data``,
``optim``, ``loss``, ``disc``, ``semantic``) plus the top-level fields of
:class:`TrainConfig`; see ``configs/*.yaml``. Unknown keys and wrong types
are errors that name the key (:func:`codec.network.config.load_yaml`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from codec.errors import ConfigError
from codec.network.config import CodecConfig


@dataclass(frozen=True)
class DataConfig:
    """Where audio comes from and how it is cut.

    Attributes:
        train: Folders, manifests (``.txt`` one path per line, ``.jsonl`` with
            ``path`` and optional ``duration_s``) or WebDataset shard patterns
            (``.tar``, brace expansion allowed) of training audio.
        valid: The same for validation; empty means a deterministic
            ``valid_fraction`` of ``train`` chosen by a hash of each path.
        valid_fraction: Share of files held out when ``valid`` is empty.
        segment_s: Length of each random training crop in seconds.
        min_duration_s: Shorter files are skipped; files shorter than a
            segment are zero-padded.
        gain_db: Random gain range (±dB) applied to each crop; 0 disables it.
        channel: ``"mix"`` averages channels, ``"random"`` picks one per crop.
        num_workers: DataLoader worker processes.
        valid_items: Validation files evaluated at each validation.
        valid_seconds: Length of each validation excerpt (from the file start).
    """

    train: tuple[str, ...] = ()
    valid: tuple[str, ...] = ()
    valid_fraction: float = 0.02
    segment_s: float = 1.0
    min_duration_s: float = 0.3
    gain_db: float = 0.0
    channel: str = "mix"
    num_workers: int = 1
    valid_items: int = 16
    valid_seconds: float = 4.0


@dataclass(frozen=True)
class OptimConfig:
    """Optimizers and schedule (AdamW for generator and discriminator).

    Attributes:
        lr: Generator learning rate.
        disc_lr: Discriminator learning rate.
        betas: Adam betas (EnCodec: 0.5, 0.9).
        weight_decay: AdamW weight decay.
        warmup_steps: Linear warm-up steps.
        decay: ``"none"`` (constant after warm-up) or ``"cosine"`` to ``lr * min_lr_ratio``.
        min_lr_ratio: Final learning-rate fraction for cosine decay.
        decay_steps: Length of the cosine decay in steps after warm-up, counted from the run's own first step
            (0: until ``steps``). A branch started with ``init=`` from a snapshot of a constant-rate run can so
            cool down over its own budget (a warm-up, stable, decay schedule).
        grad_clip: Max gradient norm (0 disables clipping).
    """

    lr: float = 3e-4
    disc_lr: float = 3e-4
    betas: tuple[float, float] = (0.5, 0.9)
    weight_decay: float = 0.0
    warmup_steps: int = 0
    decay: str = "none"
    min_lr_ratio: float = 0.1
    decay_steps: int = 0
    grad_clip: float = 1.0


@dataclass(frozen=True)
class LossConfig:
    """Loss weights; every weight but ``commitment`` goes through the balancer.

    Defaults are EnCodec's (arXiv 2210.13438): waveform L1 0.1, multi-scale mel 1,
    adversarial 3, feature matching 3, commitment 1 outside the balancer.

    Attributes:
        l1: Waveform L1 weight.
        mel: Multi-resolution mel-spectrogram loss weight.
        adversarial: Generator adversarial loss weight.
        feature: Feature-matching loss weight.
        commitment: Quantizer commitment loss weight (not balanced).
        mel_kind: ``"auraloss"`` (auraloss's multi-resolution mel loss:
            spectral convergence + log-magnitude L1, EnCodec-like) or
            ``"log_mel"`` (DAC's multi-scale ``log10`` mel L1, see
            :class:`train.losses.LogMelLoss`).
        mel_windows: Window (= FFT) sizes of the mel losses; hop is a quarter.
        mel_bins: Mel bins, one count for every window or one per window
            (DAC: windows 32 ... 2048 with 5 ... 320 bins).
        mel_energy: Weight, inside the ``log_mel`` loss, of each mel band's
            log energy over the crop (:class:`train.losses.LogMelLoss`); 0
            leaves it out.
        phase: Weight of the phase-derivative loss
            (:class:`train.losses.PhaseDerivativeLoss`); 0 leaves it out.
        phase_windows: STFT windows of the phase loss (hop a quarter).
        phase_power: Magnitude exponent of the phase loss (1: loud bins weigh most).
        magnitude: Weight of the log-magnitude L1 between the frames an istft
            decoder with ``decoder_phase: recovered`` predicts and the input's
            frames (:class:`train.losses.FrameMagnitudeLoss`); 0 leaves it out.
        pitch: Weight of the pitch loss of a decoder with
            ``decoder_harmonics`` (:func:`codec.pitch.pitch_loss`: voicing
            cross-entropy plus the cross-entropy of 25-cent pitch classes on
            voiced frames, against Praat's pitch track of each crop,
            :mod:`codec.pitch`); outside the balancer, like the commitment
            loss. Needed by such a decoder.
        pitch_forcing: Drive the harmonics with the tracked pitch while
            training (as neural source-filter vocoders train), rather than with
            the decoder's own prediction (which inference uses).
        adversarial_kind: ``"hinge"`` or ``"lsgan"``.
        balancer: Use the gradient balancer; else plain weighted sum.
        balancer_decay: EMA decay of the balancer's gradient norms (EnCodec: 0.999).
    """

    l1: float = 0.1
    mel: float = 1.0
    adversarial: float = 3.0
    feature: float = 3.0
    commitment: float = 1.0
    mel_kind: str = "auraloss"
    mel_windows: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)
    mel_bins: int | tuple[int, ...] = 64
    mel_energy: float = 0.0
    phase: float = 0.0
    phase_windows: tuple[int, ...] = (512, 1024, 2048)
    phase_power: float = 1.0
    magnitude: float = 0.0
    pitch: float = 0.0
    pitch_forcing: bool = True
    adversarial_kind: str = "hinge"
    balancer: bool = True
    balancer_decay: float = 0.999


@dataclass(frozen=True)
class DiscConfig:
    """Discriminators.

    Attributes:
        kinds: Any of ``"msd"`` (MelGAN multi-scale), ``"mpd"`` (HiFi-GAN
            multi-period), ``"msstft"`` (EnCodec multi-scale STFT) and
            ``"mrd"`` (DAC's multi-resolution STFT discriminator, split into
            frequency bands).
        mpd_periods: Periods of the MPD (HiFi-GAN: 2, 3, 5, 7, 11).
        mpd_channels: Channels of the MPD's 2-d convolution stack.
        msd_scales: Scales of the MSD (raw, x2 and x4 average-pooled).
        msd_channels: Channels of the MSD's 1-d convolution stack.
        msstft_filters: Base filters of the MS-STFT discriminator.
        msstft_windows: Window sizes of the MS-STFT discriminator.
        mrd_windows: STFT windows of the MRD (DAC: 2048, 1024, 512; hop a quarter).
        mrd_channels: Channels of each band's 2-d convolutions (DAC: 32).
        mrd_bands: Band edges as fractions of the STFT bins (DAC: 0, 0.1,
            0.25, 0.5, 0.75, 1).
        mrd_magnitude_only: The MRD judges ``log10`` STFT magnitudes instead
            of the complex spectrum: the spectrogram's texture, not its phase
            (``codec decompose`` finds the bundled decoder's magnitudes, not
            its phases, what holds ViSQOL down).
        start_step: The critics train from this step on.
        judge_step: The critics judge the generator (adversarial and feature
            losses) from this step on; until then they only learn, on the
            generator's outputs. A critic that judges from its first step is
            fooled by a generator that moves faster than it learns: branched
            from a trained model, the critics' hinge loss stayed at 2.0 (no
            separation) for 400 steps, where alone on the same model's
            outputs they separated real from decoded speech within 100.
        update_prob: Probability of a discriminator update at a step
            (EnCodec: 2/3).
    """

    kinds: tuple[str, ...] = ("msd", "mpd")
    mpd_periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    mpd_channels: tuple[int, ...] = (32, 128, 512, 1024, 1024)
    msd_scales: int = 3
    msd_channels: tuple[int, ...] = (16, 64, 256, 1024, 1024)
    msstft_filters: int = 32
    msstft_windows: tuple[int, ...] = (2048, 1024, 512, 256, 128)
    mrd_windows: tuple[int, ...] = (2048, 1024, 512)
    mrd_channels: int = 32
    mrd_bands: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)
    mrd_magnitude_only: bool = False
    start_step: int = 0
    judge_step: int = 0
    update_prob: float = 1.0


@dataclass(frozen=True)
class SemanticConfig:
    """Semantic distillation of a frozen teacher into the first codebook (SpeechTokenizer, arXiv 2308.16692).

    See :mod:`train.semantic`. Off unless ``teacher`` is set.

    Attributes:
        teacher: ``""`` (off); ``"mfcc"`` for the offline teacher (MFCC
            features, or their k-means units, as in HuBERT's first iteration);
            ``"phones"`` for the other offline teacher, with ``loss: ce``:
            pocketsphinx's US English phone recognition of every training file
            (:mod:`train.phones`; the ``semantic`` extra), one of 40 phone ids
            (SIL and the CMU dictionary's 39 phones) per codec frame, no
            transcript and no k-means needed (``units*`` are ignored);
            a torchaudio bundle name (``HUBERT_BASE``, ``HUBERT_LARGE``,
            ``WAVLM_BASE_PLUS``, ...); a local directory of a transformers
            model (HuBERT, WavLM, wav2vec 2.0, mHuBERT-147, ContentVec ports);
            or a Hugging Face model id already in the local Hugging Face cache.
        layer: Teacher layer: a transformer layer counted from 1 (negative
            counts from the last), ``"avg"`` (mean of all layers, SpeechTokenizer's
            choice) or ``"mix"`` (a learned softmax-weighted sum of the layers,
            the layer attention of arXiv 2406.10735).
        loss: ``"d_axis"`` (SpeechTokenizer's per-dimension cosine along time),
            ``"cosine"`` (per-frame cosine distance) or ``"ce"`` (cross-entropy
            on k-means units of the teacher's features, or on the phone ids of
            ``phones``, the only loss that teacher takes).
        weight: Weight of the semantic loss against the waveform losses' weights
            (see :mod:`train.semantic` for how the balancer applies it).
        cache_dir: Where the teacher's targets are cached, one file per audio file.
        units: K-means clusters of the ``"ce"`` targets (HuBERT: 100 for MFCC).
        units_files: Training files whose targets fit the k-means units.
        units_iters: K-means iterations.
        speaker_weight: Weight of a speaker adversary on the first codebook (0: none): a classifier
            learns the speaker of each crop from the first level's quantized latent, and the encoder
            gets its gradient reversed, balanced like the semantic loss's (see :mod:`train.semantic`).
            Speakers come from the ``"speaker"`` key of the JSON Lines manifests in ``data.train``.
    """

    teacher: str = ""
    layer: int | str = "avg"
    loss: str = "d_axis"
    weight: float = 1.0
    cache_dir: str = "~/.cache/rvq-codec/semantic"
    units: int = 100
    units_files: int = 1000
    units_iters: int = 30
    speaker_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.speaker_weight < 0:
            raise ConfigError(f"semantic.speaker_weight must be 0 (off) or positive, got {self.speaker_weight}")
        if self.loss not in ("d_axis", "cosine", "ce"):
            raise ConfigError(f"semantic.loss must be 'd_axis', 'cosine' or 'ce', got {self.loss!r}")
        if isinstance(self.layer, str) and self.layer not in ("avg", "mix") or self.layer == 0:
            raise ConfigError(
                f"semantic.layer must be 'avg', 'mix' or a layer number (1 = first, -1 = last), got {self.layer!r}"
            )
        if self.teacher.lower() == "phones" and self.loss != "ce":
            raise ConfigError(f"semantic.teacher 'phones' gives phone ids, not features: use semantic.loss 'ce', "
                              f"not {self.loss!r}")
        if self.loss == "ce" and self.layer == "mix":
            raise ConfigError("semantic.loss 'ce' needs fixed targets: use semantic.layer 'avg' or a layer number")
        if self.weight <= 0 or self.units < 2 or self.units_files < 1:
            raise ConfigError(
                "semantic.weight must be positive, semantic.units at least 2 and semantic.units_files at least 1"
            )


@dataclass(frozen=True)
class TrainConfig:
    """A whole training run.

    Attributes:
        model: The codec architecture.
        data: Data sources and crops.
        optim: Optimizers.
        loss: Loss weights.
        disc: Discriminators.
        semantic: Semantic distillation into the first codebook (off by default).
        batch_size: Crops per step and process.
        steps: Total generator steps.
        seed: Seed of every random choice (data order, crops, quantizer).
        mixed_precision: ``"no"``, ``"bf16"`` or ``"fp16"`` (accelerate).
        log_every: Steps between TensorBoard scalar logs.
        valid_every: Steps between validations (0 disables).
        checkpoint_every: Steps between checkpoints.
        keep_checkpoints: Checkpoints kept on disk (oldest removed first).
        max_bad_steps: Stop after this many steps with a NaN/Inf loss.
        cpu_budget_s: Stop (with a checkpoint) once the training process has
            used this many CPU seconds, counted across resumes (0: no limit).
            CPU time, unlike wall time, is not inflated by other work on the
            machine, so runs compared at equal budgets got equal compute. Use
            ``data.num_workers: 0`` so data loading is counted too.
        snapshot_every_cpu_s: Every this many CPU seconds, save the generator
            to ``run_dir/snapshots/cpu-<seconds>s`` (0: never), for quality
            against compute curves.
        threads: Torch intra-op threads (0 leaves torch's default).
        init: Start the generator from this saved model (a directory written by
            ``Codec.save_pretrained`` or a bundled name) instead of a random
            initialisation: a fine-tune. Its architecture must equal ``model``'s,
            but for the istft decoder's head layout (``decoder_phase``,
            ``decoder_subframes``, ``n_fft``): each predicted frame then starts
            from the saved log-magnitude rows, carried to its bins.
            Optimizers and discriminators start afresh; ignored on ``--resume``,
            whose checkpoint holds the weights. The step count and CPU seconds
            start at 0, or, for a run's snapshot (``RUN/snapshots/cpu-<s>s``), at
            the snapshot's: the fine-tune is a branch of that run
            (``train.loop.snapshot_origin``).
        init_decoder: Whether ``init`` gives the decoder too. ``False`` takes only
            the encoder and quantizer (their settings must match) and trains a
            decoder of this config's settings from scratch on the saved codes.
    """

    model: CodecConfig = field(default_factory=CodecConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    disc: DiscConfig = field(default_factory=DiscConfig)
    semantic: SemanticConfig = field(default_factory=SemanticConfig)
    batch_size: int = 8
    steps: int = 100_000
    seed: int = 0
    mixed_precision: str = "no"
    log_every: int = 25
    valid_every: int = 1000
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    max_bad_steps: int = 50
    cpu_budget_s: float = 0.0
    snapshot_every_cpu_s: float = 0.0
    threads: int = 0
    init: str = ""
    init_decoder: bool = True

    def __post_init__(self) -> None:
        """Checks settings that span sections.

        Raises:
            ConfigError: ``loss.magnitude`` without a decoder that recovers its phase; ``loss.pitch``
                without a decoder with harmonics, or the reverse.
        """
        if (self.loss.pitch > 0) != self.model.decoder_harmonics:
            raise ConfigError(
                "model.decoder_harmonics and loss.pitch go together: the harmonics follow the predicted pitch, "
                "which only loss.pitch trains; set both (e.g. loss.pitch 0.1) or neither, got "
                f"decoder_harmonics {self.model.decoder_harmonics}, loss.pitch {self.loss.pitch}"
            )
        if self.loss.magnitude > 0 and not (self.model.decoder == "istft" and self.model.decoder_phase == "recovered"):
            raise ConfigError(
                "loss.magnitude trains the magnitudes of a decoder whose phase is recovered from them: "
                "set model.decoder 'istft' and model.decoder_phase 'recovered', or loss.magnitude 0"
            )
