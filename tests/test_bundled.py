"""The model shipped inside the package loads offline and compresses real speech."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from codec import Codec, audio, pretrained_names
from codec.fileformat.compress import compress, decompress, load_model, read_info
from codec.network.config import load_yaml
from train.config import TrainConfig
from train.loop import initialize_from

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
CLIP = DATA / "asterisk_it_carlo_all-circuits-busy-now.wav"


def test_bundled_model_is_listed_and_loads_with_its_recorded_id() -> None:
    assert "speech-16khz" in pretrained_names()
    model = Codec.from_pretrained("speech-16khz")
    assert model.sample_rate == 16000 and model.config.n_q == 8 and model.config.codebook_size == 1024
    assert model.bandwidths_kbps[:4] == (0.5, 1.0, 1.5, 2.0)
    assert load_model().model_id == model.model_id  # compress's default model


@pytest.mark.parametrize("kbps", [1.0, 4.0], ids=["1kbps", "4kbps"])
def test_compress_round_trip_with_fitted_entropy_tables(tmp_path: Path, kbps: float) -> None:
    packed, restored = tmp_path / "x.rvq", tmp_path / "x.wav"
    compress(CLIP, packed, bandwidth_kbps=kbps)
    decompress(packed, restored)
    original, rate = audio.load(CLIP)
    decoded, decoded_rate = audio.load(restored)
    assert decoded_rate == rate and decoded.shape == original.shape
    assert read_info(packed).header.n_q == round(kbps / 0.5)
    assert torch.isfinite(decoded).all() and float(decoded.abs().max()) > 0.01


def test_entropy_tables_are_fitted_to_speech_codes() -> None:
    loaded = load_model()
    codes = loaded.codec.encode(audio.load(CLIP, target_rate=16000, mono=True)[0][None]).codes[0]  # [n_q, F]
    counts = torch.as_tensor(loaded.tables.counts, dtype=torch.float64)  # [n_q, K]
    probs = counts / counts.sum(dim=1, keepdim=True)
    bits = -torch.log2(probs.gather(1, codes)).mean()
    assert float(bits) < 9.9  # uniform tables would need exactly 10 bits per code


def test_the_finetune_config_starts_from_the_bundled_model_whole() -> None:
    config = load_yaml(TrainConfig, ROOT / "configs" / "speech16k_finetune.yaml")
    assert config.init == "speech-16khz" and config.disc.kinds
    model = Codec(config.model)
    initialize_from(model, config.init)
    bundled = Codec.from_pretrained("speech-16khz").state_dict()
    assert model.state_dict().keys() == bundled.keys()
    assert all(torch.equal(tensor, bundled[key]) for key, tensor in model.state_dict().items())
