"""Semantic distillation: teachers, frame alignment, the target cache, k-means units, losses, training."""

from __future__ import annotations

import dataclasses
import glob
import json
import math
import sys
import urllib.error
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import DATA_DIR, load_speech
from safetensors.torch import load_file

from codec.audio import load
from codec.errors import CodecError, ConfigError, SampleRateError
from codec.network.config import load_yaml
from codec.network.presets import codec_tiny_config
from codec.sources import list_audio
from train import semantic as semantic_lib
from train.config import DataConfig, SemanticConfig, TrainConfig
from train.data import CropDataset, probe
from train.loop import train
from train.phones import PHONES, SILENCE, PhoneRecognizer, PhoneRecognizerError, phone_id
from train.semantic import SemanticDistillation, SemanticHead, TargetCache, build_semantic, select_layers
from train.teachers import (
    MfccTeacher,
    PhoneTeacher,
    TeacherError,
    TransformersTeacher,
    align_frames,
    align_labels,
    bundle_names,
    load_teacher,
    teacher_id,
)

ROOT = Path(__file__).resolve().parents[1]


def entries() -> list:
    return probe([str(p) for p in list_audio(DATA_DIR)], 0.3)


def save_tiny_hubert(directory: Path, normalize: bool) -> torch.nn.Module:
    """A random 2-layer HuBERT with 16-dim states, saved in transformers format with its feature extractor."""
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    torch.manual_seed(0)
    config = HubertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                          conv_dim=(8,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    model = HubertModel(config).eval()
    model.save_pretrained(directory)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=normalize).save_pretrained(directory)
    return model


def test_tiny_hubert_loads_through_transformers_and_normalises_its_input(tmp_path: Path) -> None:
    reference = save_tiny_hubert(tmp_path / "hubert", normalize=True)
    teacher = load_teacher(str(tmp_path / "hubert"))
    assert isinstance(teacher, TransformersTeacher) and teacher.frame_rate_hz == 50.0
    wav = load_speech(16000, index=0, seconds=1.0)[0, 0]  # [T]
    hidden = teacher.hidden_states(wav)
    assert hidden.shape == (2, 49, 16)  # layers, frames (a 400-sample receptive field fits 49 times), dims
    normalised = (wav - wav.mean()) / (wav.var() + 1e-7).sqrt()
    with torch.no_grad():
        expected = reference(normalised[None], output_hidden_states=True).hidden_states[1:]
    torch.testing.assert_close(hidden, torch.cat(expected), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(teacher.hidden_states(0.3 * wav), hidden, atol=1e-4, rtol=1e-4)


def test_teacher_without_normalisation_sees_the_raw_signal(tmp_path: Path) -> None:
    save_tiny_hubert(tmp_path / "hubert", normalize=False)
    teacher = load_teacher(str(tmp_path / "hubert"))
    wav = load_speech(16000, index=1, seconds=0.5)[0, 0]
    assert not torch.allclose(teacher.hidden_states(0.3 * wav), teacher.hidden_states(wav), atol=1e-3)


def test_teacher_names_resolve_and_missing_weights_say_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert {"HUBERT_BASE", "HUBERT_LARGE", "WAVLM_BASE", "WAVLM_BASE_PLUS"} <= set(bundle_names())
    assert not any("ASR" in name for name in bundle_names())
    assert teacher_id("hubert_base") == "HUBERT_BASE" and teacher_id("MFCC") == "mfcc"
    assert teacher_id(str(tmp_path)) == str(tmp_path.resolve())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty cache

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(TeacherError, match="cannot be fetched offline.*local directory"):
        load_teacher("hubert_base")
    with pytest.raises(TeacherError, match="no such directory"):
        load_teacher(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(TeacherError, match="no transformers model in this directory"):
        load_teacher(str(tmp_path / "empty"))


def test_mfcc_teacher_gives_normalised_39_dim_frames_at_100_hz() -> None:
    teacher = load_teacher("mfcc")
    wav = load_speech(16000, index=2, seconds=2.0)[0, 0]
    hidden = teacher.hidden_states(wav)
    assert isinstance(teacher, MfccTeacher) and teacher.frame_rate_hz == 100.0
    assert hidden.shape == (1, 201, 39)
    torch.testing.assert_close(hidden[0].mean(0), torch.zeros(39), atol=1e-4, rtol=0)
    torch.testing.assert_close(hidden[0].std(0, unbiased=False), torch.ones(39), atol=1e-3, rtol=0)


@pytest.mark.parametrize(("layer", "layers"), [("avg", 1), ("mix", 3), (2, 1), (-1, 1)], ids=str)
def test_layer_choice_gives_the_target_layers(layer: int | str, layers: int) -> None:
    hidden = torch.randn(3, 10, 4)
    target = select_layers(hidden, layer)
    assert target.shape == (layers, 10, 4)
    expected = {"avg": hidden.mean(0, keepdim=True), "mix": hidden, 2: hidden[1:2], -1: hidden[2:]}[layer]
    torch.testing.assert_close(target, expected)
    with pytest.raises(ConfigError, match="layers 1 to 3"):
        select_layers(hidden, 4)


def test_learned_layer_mix_starts_as_the_average_and_learns_weights() -> None:
    head = SemanticHead(dim=8, target_dim=4, loss="cosine", n_layers=3)
    teacher = torch.randn(2, 3, 10, 4)  # [B, L, F, D_t]
    torch.testing.assert_close(head.target(teacher), teacher.mean(1))
    head(torch.randn(2, 8, 10), teacher).backward()
    assert head.layer_logits.grad is not None and head.layer_logits.grad.abs().sum() > 0


def test_frames_align_to_the_codec_frame_rate() -> None:
    time_s = torch.arange(20.0)[None, :, None]  # [1, 20, 1]: frame i holds i
    same = align_frames(time_s, 50, 50, 22)
    assert same[0, :, 0].tolist() == [*range(20), 19, 19]  # identical rates; the end repeats the last frame
    pooled = align_frames(time_s, 100, 50, 10)
    assert pooled[0, :, 0].tolist() == [0.5 + 2 * j for j in range(10)]  # mean of each pair
    interpolated = align_frames(time_s, 100, 75, 12)  # codec frame centre (j + 1/2) / 75 s = teacher frame 4/3 j + 1/6
    torch.testing.assert_close(interpolated[0, :, 0], torch.arange(12.0) * 4 / 3 + 1 / 6)


def test_target_cache_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = SemanticConfig(teacher="mfcc", cache_dir=str(tmp_path))
    model = codec_tiny_config()
    cache = TargetCache(config, model)
    files = entries()
    cache.fill(files)
    assert cache.shape == (1, 39)
    stereo = next(e for e in files if e.sample_rate != 16000)  # 44.1 kHz: the frame count is at the codec's rate
    expected = cache.compute(MfccTeacher(), stereo)
    assert expected.shape[1] == -(-round(stereo.frames * 16000 / stereo.sample_rate) // model.hop_length)
    torch.testing.assert_close(cache.frames(stereo.path, 100, 50), expected[:, 100:150], atol=2e-3, rtol=2e-3)
    tail = cache.frames(stereo.path, expected.shape[1] - 2, 5)
    torch.testing.assert_close(tail[:, 2:], tail[:, 1:2].expand(-1, 3, -1))  # past the end: the last frame again
    monkeypatch.setattr(semantic_lib, "load_teacher", lambda spec: pytest.fail("the teacher ran on cached files"))
    TargetCache(config, model).fill(files)
    other = TargetCache(dataclasses.replace(config, layer=1), model)
    assert other.root != cache.root  # another layer choice is another cache


def test_k_means_units_are_fitted_once_saved_and_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = SemanticConfig(teacher="mfcc", loss="ce", units=12, units_iters=5, cache_dir=str(tmp_path))
    cache = TargetCache(config, dataclasses.replace(codec_tiny_config(), ratios=(8, 5, 4, 2)))
    files = entries()
    cache.fill(files)
    centroids = cache.units(files, config)
    assert centroids.shape == (12, 39) and torch.isfinite(centroids).all()
    [saved] = list(cache.root.glob("units-12-*.safetensors"))
    torch.testing.assert_close(load_file(saved)["centroids"], centroids)
    monkeypatch.setattr(semantic_lib, "kmeans", lambda *a: pytest.fail("k-means ran again"))
    torch.testing.assert_close(cache.units(files, config), centroids)


@pytest.mark.parametrize("loss", ["d_axis", "cosine", "ce"])
def test_each_loss_decreases_when_fitting_a_head(loss: str) -> None:
    mfcc = MfccTeacher()
    target = align_frames(mfcc.hidden_states(load_speech(16000, index=2, seconds=2.0)[0, 0]), 100, 50, 100)[None]
    torch.manual_seed(0)
    mixing = torch.randn(16, 39) / 39**0.5
    first = torch.einsum("cd,bfd->bcf", mixing, target[:, 0]) + 0.1 * torch.randn(1, 16, 100)  # [1, 16, F]: a latent
    centroids = target[0, 0, torch.randperm(100)[:16]] if loss == "ce" else None
    head = SemanticHead(16, 39, loss, centroids=centroids)
    optimizer = torch.optim.Adam(head.parameters(), 1e-2)
    values = []
    for _ in range(60):
        value = head(first, target)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        values.append(float(value.detach()))
    assert values[-1] < 0.8 * values[0]


def test_semantic_settings_are_checked(tmp_path: Path) -> None:
    base = TrainConfig(model=codec_tiny_config(), semantic=SemanticConfig(teacher="mfcc", cache_dir=str(tmp_path)))
    with pytest.raises(ConfigError, match="whole frames.*segment_s = 0.2495"):
        build_semantic(dataclasses.replace(base, data=DataConfig(segment_s=0.2496)), entries(), True)
    with pytest.raises(ConfigError, match="not shards"):
        build_semantic(dataclasses.replace(base, data=DataConfig(train=("x-{0..3}.tar",))), entries(), True)
    with pytest.raises(ConfigError, match="'ce' needs fixed targets"):
        SemanticConfig(loss="ce", layer="mix")


class FrameIndex:
    """Targets whose value is the frame index, to see which frames a crop gets."""

    hop_length = 320

    def frames(self, path: str, first: int, count: int) -> torch.Tensor:
        return torch.arange(first, first + count, dtype=torch.float32)[None, :, None]  # [1, count, 1]


def test_crops_start_on_frame_boundaries_and_carry_their_frames() -> None:
    import soundfile as sf

    files = [e for e in entries() if e.sample_rate == 16000]
    dataset = CropDataset(files, 16000, DataConfig(segment_s=0.64), targets=FrameIndex())
    for seed in range(6):
        wav, target = dataset[(seed % len(files), seed)]
        first = int(target[0, 0, 0])
        assert target.shape == (1, 32, 1) and target[0, :, 0].tolist() == list(range(first, first + 32))
        audio, _ = sf.read(files[seed % len(files)].path, start=first * 320, frames=10240, dtype="float32")
        torch.testing.assert_close(wav[0], torch.from_numpy(audio))


def test_training_with_the_mfcc_teacher_lowers_the_semantic_loss(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # The tiny model with the 16 kHz preset's hop (50 Hz frames) and fast-moving codebooks, so that the
    # first codebook can follow the encoder within a few dozen steps; the adversarial losses wait.
    overrides = {"data.train": [str(DATA_DIR)], "data.valid": [str(DATA_DIR)], "valid_every": 0, "threads": 1,
                 "model.ratios": [8, 5, 4, 2], "model.dimension": 16, "model.ema_decay": 0.9,
                 "data.segment_s": 0.64, "disc.start_step": 1000, "steps": 48, "log_every": 1,
                 "checkpoint_every": 48, "semantic.teacher": "mfcc", "semantic.weight": 20.0,
                 "semantic.cache_dir": str(tmp_path / "cache")}
    config = load_yaml(TrainConfig, ROOT / "configs" / "tiny.yaml", overrides)
    exported = train(config, tmp_path / "run", quiet=True)
    events = EventAccumulator(glob.glob(str(tmp_path / "run" / "tensorboard" / "*"))[0])
    events.Reload()
    losses = [e.value for e in events.Scalars("loss/semantic")]
    assert len(losses) == 48 and sum(losses[-12:]) < 0.95 * sum(losses[:12])
    shares = [e.value for e in events.Scalars("share/semantic")]
    assert shares[0] == 0.0  # no waveform gradient measured yet
    assert abs(shares[1] - 20 / 21.1) < 0.05  # w_s / (W + w_s), W = l1 0.1 + mel 1, while the norm EMAs are fresh
    assert all(0 < s < 1 for s in shares[1:])
    head = load_file(tmp_path / "run" / "checkpoints" / "step-00000048" / "model_2.safetensors")
    assert head["proj.weight"].shape == (39, 16)
    assert not any("proj" in key for key in load_file(exported / "model.safetensors"))


def test_semantic_recipe_differs_from_the_plain_one_only_by_distillation() -> None:
    plain = load_yaml(TrainConfig, ROOT / "configs" / "speech16k.yaml")
    semantic = load_yaml(TrainConfig, ROOT / "configs" / "speech16k_semantic.yaml")
    assert semantic.semantic.teacher == "mfcc"
    renamed = dataclasses.replace(semantic.model, name=plain.model.name)
    same = dataclasses.replace(semantic, semantic=SemanticConfig(), model=renamed)
    assert same == plain  # so that `make semantic-compare` compares distillation and nothing else


def test_phone_recogniser_labels_speech_every_10_ms_whatever_came_before() -> None:
    recognizer = PhoneRecognizer()
    clips = [load(str(p), target_rate=16000, mono=True)[0][0] for p in list_audio(DATA_DIR)]  # [T] each
    ids = [recognizer.recognize(wav, 16000) for wav in clips]
    for wav, labels in zip(clips, ids, strict=True):
        assert labels.dtype == torch.int64 and labels.shape == (math.ceil(len(wav) / 160),)
        assert 0 <= int(labels.min()) and int(labels.max()) < len(PHONES) == 40
        assert 0.6 < float((labels != SILENCE).float().mean()) < 1  # trimmed speech: mostly phones, some silence
        assert len(set(labels.tolist())) > 8  # many different phones, not one class everywhere
    for index in (0, 2):  # after another file than the first time: the same phones (the front end was reset)
        assert torch.equal(recognizer.recognize(clips[index], 16000), ids[index])
    assert phone_id("+SPN+") == phone_id("SIL") == 0 and phone_id("ZH") == 39
    with pytest.raises(PhoneRecognizerError, match="not in the US English set"):
        phone_id("AX")
    with pytest.raises(SampleRateError, match="16000 Hz audio, got 44100 Hz.*target_rate=16000"):
        recognizer.recognize(clips[0], 44100)


def test_phones_teacher_says_how_to_install_pocketsphinx(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)  # import pocketsphinx fails
    with pytest.raises(CodecError, match=r"needs pocketsphinx: pip install 'rvq-codec\[semantic\]'"):
        load_teacher("phones")
    with pytest.raises(ConfigError, match="'phones' gives phone ids.*use semantic.loss 'ce'"):
        SemanticConfig(teacher="phones", loss="d_axis")
    with pytest.raises(ConfigError, match="needs k-means centroids or a teacher of class ids"):
        SemanticHead(8, 1, "cosine", classes=40)


def test_labels_align_to_the_codec_frame_at_its_centre() -> None:
    labels = torch.arange(20.0)[None, :, None]  # [1, 20, 1]: 10 ms frame i has label i
    assert align_labels(labels, 100, 50, 12)[0, :, 0].tolist() == [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 19, 19]
    assert align_labels(labels, 100, 75, 4)[0, :, 0].tolist() == [0, 2, 3, 4]  # centres at 2/3, 2, 10/3, 14/3
    assert align_labels(labels, 50, 50, 3)[0, :, 0].tolist() == [0, 1, 2]


def test_phone_targets_are_cached_per_file_and_read_back_identically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = SemanticConfig(teacher="phones", loss="ce", cache_dir=str(tmp_path))
    model = dataclasses.replace(codec_tiny_config(), ratios=(8, 5, 4, 2))  # 50 Hz frames
    cache = TargetCache(config, model)
    files = entries()
    cache.fill(files)
    assert cache.shape == (1, 1) and cache.classes == len(PHONES)
    assert cache.root != TargetCache(dataclasses.replace(config, teacher="mfcc"), model).root
    stereo = next(e for e in files if e.sample_rate != 16000)
    expected = cache.compute(PhoneTeacher(), stereo)  # [1, F, 1]
    assert expected.shape == (1, math.ceil(round(stereo.frames * 16000 / stereo.sample_rate) / 320), 1)
    first = [cache.frames(e.path, 0, 200) for e in files]
    assert torch.equal(first[files.index(stereo)][:, : expected.shape[1]], expected)
    for target in first:
        assert torch.equal(target, target.round()) and 0 <= target.min() and target.max() < len(PHONES)
    monkeypatch.setattr(semantic_lib, "load_teacher", lambda spec: pytest.fail("the teacher ran on cached files"))
    reread = TargetCache(config, model)
    reread.fill(files)
    assert all(torch.equal(reread.frames(e.path, 0, 200), t) for e, t in zip(files, first, strict=True))
    head = SemanticHead(16, 1, "ce", classes=reread.classes)
    with torch.no_grad():
        loss = head(torch.randn(len(files), 16, 200), torch.stack(first))  # [B, D, F] against [B, 1, F, 1]
    assert abs(float(loss) - math.log(len(PHONES))) < 1.0  # an untrained head: about uniform over 40 phones


def test_training_step_with_the_phones_teacher(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    overrides = {"data.train": [str(DATA_DIR)], "data.valid": [str(DATA_DIR)], "valid_every": 0, "threads": 1,
                 "model.ratios": [8, 5, 4, 2], "data.segment_s": 0.64, "steps": 3, "log_every": 1,
                 "checkpoint_every": 3, "disc.start_step": 1000, "semantic.teacher": "phones", "semantic.loss": "ce",
                 "semantic.cache_dir": str(tmp_path / "cache")}
    config = load_yaml(TrainConfig, ROOT / "configs" / "tiny.yaml", overrides)
    train(config, tmp_path / "run", quiet=True)
    events = EventAccumulator(glob.glob(str(tmp_path / "run" / "tensorboard" / "*"))[0])
    events.Reload()
    losses = [e.value for e in events.Scalars("loss/semantic")]
    assert len(losses) == 3 and all(math.isfinite(v) and v > 0 for v in losses)
    head = load_file(tmp_path / "run" / "checkpoints" / "step-00000003" / "model_2.safetensors")
    assert head["proj.weight"].shape == (len(PHONES), config.model.dimension)  # one logit per phone
    assert "centroids" not in head and not list((tmp_path / "cache").rglob("units-*"))  # nothing fitted


def speaker_manifest(path: Path, speakers: list[str]) -> Path:
    """A JSON Lines manifest of the committed clips, the i-th file said by ``speakers[i]``."""
    files = list_audio(DATA_DIR)
    rows = [{"path": str(f), "speaker": s} for f, s in zip(files, speakers, strict=False)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_speakers_come_from_the_manifest_rows(tmp_path: Path) -> None:
    manifest = speaker_manifest(tmp_path / "train.jsonl", ["b", "a", "b", "c"])
    indices = semantic_lib.speaker_indices([str(manifest), str(DATA_DIR)])
    assert sorted(indices.values()) == [0, 1, 1, 2]  # a, b, c by name; the folder adds no speaker
    assert indices[str(list_audio(DATA_DIR)[1])] == 0
    one = speaker_manifest(tmp_path / "one.jsonl", ["a", "a"])
    with pytest.raises(ConfigError, match="at least two speakers.*\"speaker\" key"):
        semantic_lib.speaker_indices([str(one), str(DATA_DIR)])
    with pytest.raises(ConfigError, match="speaker_weight must be 0"):
        SemanticConfig(speaker_weight=-1.0)


@pytest.mark.parametrize("balanced", [True, False])
def test_encoder_gets_the_speaker_gradient_reversed_and_the_classifier_the_plain_one(balanced: bool) -> None:
    torch.manual_seed(0)
    first = torch.randn(1, 8, 20, requires_grad=True)  # [B, D, F]: the first level's latent
    quantizer = SimpleNamespace(first_quantized=first * 1.0, quantized=first.detach())
    teacher, speaker = torch.randn(1, 1, 20, 39), torch.tensor([2])
    head = SemanticHead(8, 39, "cosine", speakers=3)
    distillation = SemanticDistillation(head, None, weight=1.0, balanced=balanced, speakers={}, speaker_weight=0.5)
    distillation.latent_norm_sum = distillation.latent_weight_sum = 1.0  # ||dL_wave/dq|| = 1 (W = 1)
    losses = distillation.loss(quantizer, teacher, speaker)
    distillation.surrogate(losses, {"mel": 1.0}).backward()

    leaf = first.detach().requires_grad_()
    g_semantic = torch.autograd.grad(head.semantic_loss(leaf, teacher), leaf)[0]
    g_speaker = torch.autograd.grad(head.speaker.loss(leaf, speaker), leaf)[0]
    if balanced:  # each normalised to norm 1, then weighted
        g_semantic, g_speaker = g_semantic / g_semantic.norm(), g_speaker / g_speaker.norm()
    torch.testing.assert_close(first.grad, g_semantic - 0.5 * g_speaker)
    classifier = head.speaker.net[-1].weight
    plain = torch.autograd.grad(head.speaker.loss(leaf, speaker), classifier)[0]
    torch.testing.assert_close(classifier.grad, plain)  # the classifier itself learns to tell speakers apart
    assert 0 < distillation.last_speaker_share < 1 if balanced else True


def test_training_with_a_speaker_adversary_on_real_speech(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    manifest = speaker_manifest(tmp_path / "train.jsonl", ["allison", "carlo", "codec2", "tuxpaint"])
    overrides = {"data.train": [str(manifest)], "data.valid": [str(DATA_DIR)], "valid_every": 0, "threads": 1,
                 "model.ratios": [8, 5, 4, 2], "data.segment_s": 0.64, "steps": 4, "log_every": 1,
                 "checkpoint_every": 4, "disc.start_step": 1000, "semantic.teacher": "mfcc",
                 "semantic.speaker_weight": 0.5, "semantic.cache_dir": str(tmp_path / "cache")}
    config = load_yaml(TrainConfig, ROOT / "configs" / "tiny.yaml", overrides)
    exported = train(config, tmp_path / "run", quiet=True)
    events = EventAccumulator(glob.glob(str(tmp_path / "run" / "tensorboard" / "*"))[0])
    events.Reload()
    losses = [e.value for e in events.Scalars("loss/speaker")]
    assert len(losses) == 4 and all(0 < v < 3 * math.log(4) for v in losses)  # near chance: log 4 = 1.39
    shares = [e.value for e in events.Scalars("share/speaker")]
    assert shares[0] == 0.0 and all(0 < s < 1 for s in shares[1:])
    head = load_file(tmp_path / "run" / "checkpoints" / "step-00000004" / "model_2.safetensors")
    assert head["speaker.net.2.weight"].shape == (4, 256)  # one logit per speaker
    assert not any("speaker" in key for key in load_file(exported / "model.safetensors"))
