"""Frozen teachers for semantic distillation, and the alignment of their frames to the codec's.

A teacher turns a mono signal at its own rate into one feature sequence per layer::

    wav [T] at teacher.sample_rate --teacher--> hidden [L, F_t, D] at teacher.frame_rate_hz
    hidden --align_frames--> [L, F, D] at the codec frame rate

Four kinds (:func:`load_teacher` picks one from a string):

- ``"phones"``: the other offline teacher: pocketsphinx's phone recognition
  (:mod:`train.phones`), one phone id every 10 ms. Its "features" are class
  ids, ``[1, F_t, 1]`` (:attr:`Teacher.classes` says how many), aligned by
  :func:`align_labels` instead of :func:`align_frames`.
- ``"mfcc"``: the offline teacher for machines without HuBERT weights: 13 MFCCs
  with deltas and delta-deltas (39 dimensions) every 10 ms, normalised to zero
  mean and unit variance over each file. HuBERT's first iteration clusters
  exactly these features (Hsu et al. 2021, arXiv 2106.07447, section IV-B).
- a torchaudio bundle name (``HUBERT_BASE``, ``HUBERT_LARGE``, ``WAVLM_BASE``, ...):
  the weights come from ``torch.hub``'s cache, downloaded on first use.
- a transformers model (HuBERT, WavLM, wav2vec 2.0, and the mHuBERT-147 and
  ContentVec ports): a local directory or a model id already in the Hugging
  Face cache, loaded with ``AutoModel`` and ``AutoFeatureExtractor``; the
  input is normalised to zero mean and unit variance when the feature
  extractor says ``do_normalize``.

Layers are the transformer layers' outputs, ``L`` of them (the convolutional
front-end's output is not one).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torchaudio
from torch import Tensor, nn

from codec.errors import CodecError
from train.phones import PHONE_HOP, PHONE_RATE_HZ, PHONES, PhoneRecognizer

#: Rate of every HuBERT-family model and of the MFCC teacher.
TEACHER_RATE_HZ = 16000
#: MFCC analysis: 25 ms windows every 10 ms (HuBERT's MFCC targets, Kaldi's defaults).
MFCC_WINDOW, MFCC_HOP = 400, 160
#: Samples per frame of every wav2vec 2.0-family front end: conv strides 5, 2, 2, 2, 2, 2, 2 (arXiv 2006.11477).
WAV2VEC2_HOP = 320


class TeacherError(CodecError):
    """A teacher cannot be found or loaded."""


class Teacher(nn.Module):
    """A frozen feature extractor: mono audio at :attr:`sample_rate` to per-layer features.

    Attributes:
        sample_rate: Rate of the input in Hz.
        frame_rate_hz: Rate of the output frames.
        classes: 0 for a teacher of features; ``K`` for one of class ids, whose
            output ``[1, F_t, 1]`` holds ids ``0 .. K - 1``.
    """

    sample_rate: int = TEACHER_RATE_HZ
    frame_rate_hz: float
    classes: int = 0

    def hidden_states(self, wav: Tensor) -> Tensor:
        """Features ``[L, F_t, D]`` of the mono signal ``wav`` [T]."""
        raise NotImplementedError


class MfccTeacher(Teacher):
    """MFCC + delta + delta-delta (39 dimensions) at 100 Hz, normalised per file; one "layer"."""

    def __init__(self) -> None:
        super().__init__()
        self.frame_rate_hz = TEACHER_RATE_HZ / MFCC_HOP
        self.mfcc = torchaudio.transforms.MFCC(
            TEACHER_RATE_HZ, n_mfcc=13, melkwargs={"n_fft": MFCC_WINDOW, "hop_length": MFCC_HOP, "n_mels": 40}
        )

    @torch.no_grad()
    def hidden_states(self, wav: Tensor) -> Tensor:
        ceps = self.mfcc(wav)  # [13, F_t]
        delta = torchaudio.functional.compute_deltas(ceps)
        features = torch.cat([ceps, delta, torchaudio.functional.compute_deltas(delta)]).t()  # [F_t, 39]
        features = (features - features.mean(0)) / features.std(0, unbiased=False).clamp(min=1e-5)
        return features[None]  # [1, F_t, 39]


class PhoneTeacher(Teacher):
    """pocketsphinx's phone recognition: one phone id every 10 ms, as ``[1, F_t, 1]``.

    Ids index :data:`train.phones.PHONES` (:class:`~train.phones.PhoneRecognizer`).

    Raises:
        PhoneRecognizerError: If pocketsphinx is not installed.
    """

    def __init__(self) -> None:
        super().__init__()
        self.recognizer = PhoneRecognizer()
        self.sample_rate, self.frame_rate_hz, self.classes = PHONE_RATE_HZ, PHONE_RATE_HZ / PHONE_HOP, len(PHONES)

    def hidden_states(self, wav: Tensor) -> Tensor:
        ids = self.recognizer.recognize(wav, self.sample_rate)  # [F_t]
        return ids.float()[None, :, None]  # [1, F_t, 1]


class TransformersTeacher(Teacher):
    """A HuBERT-family ``transformers`` model: ``hidden_states[1:]`` with ``output_hidden_states=True``.

    Args:
        name: The model's directory or id, for messages.
        model: The model (``AutoModel``).
        extractor: Its feature extractor (``AutoFeatureExtractor``), or ``None`` to feed the raw signal.
    """

    def __init__(self, name: str, model: nn.Module, extractor: object | None) -> None:
        super().__init__()
        self.model, self.extractor = model.eval().requires_grad_(False), extractor
        self.sample_rate = int(getattr(extractor, "sampling_rate", TEACHER_RATE_HZ))
        strides = getattr(model.config, "conv_stride", None)
        if not strides:
            raise TeacherError(f"teacher {name}: {type(model).__name__} has no conv_stride; use a HuBERT-family model")
        self.frame_rate_hz = self.sample_rate / math.prod(strides)

    @torch.no_grad()
    def hidden_states(self, wav: Tensor) -> Tensor:
        if self.extractor is None:
            inputs = wav[None]  # [1, T]
        else:  # the model's own preprocessing, normalising when its config says do_normalize
            inputs = self.extractor(wav.numpy(), sampling_rate=self.sample_rate, return_tensors="pt").input_values
        out = self.model(inputs, output_hidden_states=True)
        return torch.cat(out.hidden_states[1:])  # [L, F_t, D]


class TorchaudioTeacher(Teacher):
    """A ``torchaudio.pipelines`` HuBERT/WavLM/wav2vec 2.0 bundle (``extract_features``)."""

    def __init__(self, model: nn.Module, sample_rate: int, hop_length: int) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.sample_rate, self.frame_rate_hz = sample_rate, sample_rate / hop_length

    @torch.no_grad()
    def hidden_states(self, wav: Tensor) -> Tensor:
        layers, _ = self.model.extract_features(wav[None])  # L x [1, F_t, D]; input layer norm included
        return torch.cat(layers)  # [L, F_t, D]


def load_teacher(spec: str) -> Teacher:
    """The teacher named by ``spec`` (see the module docstring), on the CPU in eval mode.

    Raises:
        TeacherError: If ``spec`` names nothing loadable, or weights would have to be downloaded and cannot be.
    """
    if spec.lower() == "mfcc":
        return MfccTeacher()
    if spec.lower() == "phones":
        return PhoneTeacher()
    if Path(spec).expanduser().is_dir():
        return _transformers_teacher(str(Path(spec).expanduser().resolve()))
    if spec.upper() in bundle_names():
        return _torchaudio_teacher(spec.upper())
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise TeacherError(f"semantic teacher {spec!r}: no such directory")
    return _transformers_teacher(spec)


def teacher_id(spec: str) -> str:
    """The canonical name of the teacher ``spec`` names (a resolved path for directories), without loading it."""
    if spec.lower() in ("mfcc", "phones"):
        return spec.lower()
    path = Path(spec).expanduser()
    if path.is_dir():
        return str(path.resolve())
    return spec.upper() if spec.upper() in bundle_names() else spec


def bundle_names() -> list[str]:
    """Names of the torchaudio bundles that can serve as teachers (HuBERT, WavLM, wav2vec 2.0 without ASR heads)."""
    return sorted(
        name for name in dir(torchaudio.pipelines)
        if name.startswith(("HUBERT", "WAVLM", "WAV2VEC2")) and "_ASR_" not in name
    )


def _torchaudio_teacher(name: str) -> TorchaudioTeacher:
    bundle = getattr(torchaudio.pipelines, name)
    try:
        model = bundle.get_model(dl_kwargs={"progress": False})
    except (OSError, RuntimeError, ValueError) as e:  # urllib's URLError is an OSError
        raise TeacherError(
            f"semantic teacher {name}: its weights are not in torch.hub's cache ({torch.hub.get_dir()}/checkpoints) "
            f"and cannot be fetched offline ({type(e).__name__}: {e}). Copy the weight file there from a machine "
            "with internet, or pass a local directory of a transformers model (semantic.teacher=/path/to/hubert)"
        ) from None
    return TorchaudioTeacher(model, int(bundle.sample_rate), WAV2VEC2_HOP)


def _transformers_teacher(name_or_dir: str) -> TransformersTeacher:
    from transformers import AutoFeatureExtractor, AutoModel

    is_dir = Path(name_or_dir).is_dir()
    try:
        model = AutoModel.from_pretrained(name_or_dir)  # honours HF_HUB_OFFLINE
    except (OSError, ValueError) as e:
        where = "this directory" if is_dir else "the local Hugging Face cache, and it cannot be fetched offline"
        raise TeacherError(
            f"semantic teacher {name_or_dir!r}: no transformers model in {where} ({e}). Pass a local directory "
            f"saved with save_pretrained, a torchaudio bundle ({', '.join(bundle_names()[:3])}, ...), 'mfcc' or 'phones'"
        ) from None
    try:
        extractor = AutoFeatureExtractor.from_pretrained(name_or_dir, local_files_only=True)
    except (OSError, ValueError):
        extractor = None  # no preprocessor_config.json: the raw signal, as fairseq's HuBERT takes it
    return TransformersTeacher(name_or_dir, model, extractor)


def align_frames(features: Tensor, source_hz: float, target_hz: float, n_frames: int) -> Tensor:
    """Resamples ``features`` [L, F_t, D] along time to ``n_frames`` frames at ``target_hz``.

    - Equal rates (HuBERT at 16 kHz and a 16 kHz codec with hop 320: both 50 Hz):
      frame ``j`` is teacher frame ``j``.
    - ``source_hz`` an integer multiple ``k`` of ``target_hz`` (the 100 Hz MFCCs
      for a 50 Hz codec): frame ``j`` is the mean of teacher frames ``jk .. jk + k - 1``.
    - Otherwise linear interpolation between the two teacher frames around the
      centre of codec frame ``j``, at teacher position ``(j + 1/2) * source_hz / target_hz - 1/2``.

    Frames past the teacher's last one repeat it (the teacher's convolutions
    drop a partial frame at the end).
    """
    ratio = source_hz / target_hz
    if ratio >= 1 and math.isclose(ratio, round(ratio), rel_tol=1e-6):
        k = round(ratio)
        pooled = nn.functional.avg_pool1d(features.transpose(1, 2), k, k, ceil_mode=True).transpose(1, 2)
        index = torch.arange(n_frames).clamp(max=pooled.shape[1] - 1)
        return pooled[:, index]  # [L, n_frames, D]
    position = ((torch.arange(n_frames) + 0.5) * ratio - 0.5).clamp(0, features.shape[1] - 1)
    low = position.floor().long()
    high = (low + 1).clamp(max=features.shape[1] - 1)
    weight = (position - low)[None, :, None].to(features.dtype)
    return features[:, low] * (1 - weight) + features[:, high] * weight  # [L, n_frames, D]


def align_labels(labels: Tensor, source_hz: float, target_hz: float, n_frames: int) -> Tensor:
    """Picks from class ids ``labels`` [L, F_t, 1] at ``source_hz`` the id at the centre of each of ``n_frames`` frames.

    Codec frame ``j`` gets teacher frame ``floor((j + 1/2) * source_hz / target_hz)``:
    for 10 ms phones and a 50 Hz codec, frame ``2j + 1``, the one that starts
    at the codec frame's centre (as :mod:`eval.alignment` labels frames for
    the phonetic scores). Ids are never averaged; frames past the teacher's
    last one repeat it. Returns ``[L, n_frames, 1]``.
    """
    centre = ((torch.arange(n_frames, dtype=torch.float64) + 0.5) * (source_hz / target_hz) + 1e-9).floor().long()
    return labels[:, centre.clamp(max=labels.shape[1] - 1)]  # [L, n_frames, 1]
