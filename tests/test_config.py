"""Strict config loading: YAML files, dotted overrides, command-line overrides."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from codec.errors import ConfigError
from codec.network.config import CodecConfig, from_dict, load_yaml, parse_overrides, to_dict
from codec.network.presets import PRESETS


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """A nested section, as training configs have."""

    lr: float = 3e-4
    betas: tuple[float, ...] = (0.5, 0.9)


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """A config with sections, to test dotted keys."""

    model: CodecConfig = dataclasses.field(default_factory=CodecConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    note: str | None = None


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_load_yaml_reads_fields_and_turns_lists_into_tuples(tmp_path: Path) -> None:
    path = write(tmp_path, "name: small\nn_q: 4\nratios: [4, 2]\nema_decay: 0.9\nquantizer_dropout: false\n")
    config = load_yaml(CodecConfig, path)
    assert config == CodecConfig(name="small", n_q=4, ratios=(4, 2), ema_decay=0.9, quantizer_dropout=False)
    assert isinstance(config.ratios, tuple)
    assert config.hop_length == 8
    hash(config)  # frozen and hashable, which lists would break


def test_empty_yaml_gives_the_defaults(tmp_path: Path) -> None:
    assert load_yaml(CodecConfig, write(tmp_path, "")) == CodecConfig()


def test_int_is_accepted_for_a_float_field(tmp_path: Path) -> None:
    config = load_yaml(ExperimentConfig, write(tmp_path, "optim:\n  lr: 1\n"))
    assert config.optim.lr == 1.0 and isinstance(config.optim.lr, float)


@pytest.mark.parametrize("text", ["optim:\n  lr: 1e-3\n", "optim:\n  lr: 1.0e-3\n", "optim:\n  lr: 0.001\n"],
                         ids=["1e-3", "1.0e-3", "0.001"])
def test_exponent_floats_are_floats(tmp_path: Path, text: str) -> None:
    assert load_yaml(ExperimentConfig, write(tmp_path, text)).optim.lr == pytest.approx(1e-3)


BAD_FILES = {
    "unknown-key": ("model:\n  ratio: [4, 2]\n", r"unknown config key 'model\.ratio'.*ratios"),
    "unknown-nested-key": ("model:\n  n_qq: 4\n", r"unknown config key 'model\.n_qq'"),
    "str-for-int": ("model:\n  n_q: eight\n", r"'model\.n_q'.*expected int"),
    "bool-for-int": ("model:\n  n_q: true\n", r"'model\.n_q'.*expected int"),
    "str-for-float": ("optim:\n  lr: fast\n", r"'optim\.lr'.*expected float"),
    "scalar-for-list": ("model:\n  ratios: 8\n", r"'model\.ratios'.*expected a list"),
    "bad-list-item": ("model:\n  ratios: [4, two]\n", r"'model\.ratios\[1\]'.*expected int"),
    "scalar-for-section": ("optim: 3\n", r"optim.*expected a mapping"),
    "bad-optional": ("note: [1]\n", r"'note'"),
    "invalid-value": ("model:\n  n_q: 0\n", r"n_q must be in \[1, 64\], got 0"),
    "top-level-list": ("- 1\n- 2\n", r"top level must be a mapping"),
    "malformed-yaml": ("model: [4, 2\n", r"config\.yaml"),
}


@pytest.mark.parametrize(("text", "message"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_yaml_raises_config_error_naming_the_problem(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_yaml(ExperimentConfig, write(tmp_path, text))
    assert "config.yaml" in str(info.value), "the message should name the file"


def test_missing_file_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(CodecConfig, tmp_path / "nope.yaml")


def test_dotted_overrides_apply_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "model:\n  n_q: 4\n  ratios: [4, 2]\n")
    overrides = {"model.n_q": 2, "optim.lr": 0.01, "optim.betas": [0.8, 0.99], "note": "run 1"}
    config = load_yaml(ExperimentConfig, path, overrides)
    assert config.model.n_q == 2
    assert config.model.ratios == (4, 2)  # untouched keys of the file stay
    assert config.optim == OptimConfig(lr=0.01, betas=(0.8, 0.99))
    assert config.note == "run 1"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"model.n_q.x": 1}, r"'n_q' is not a section"), ({"model.bogus": 1}, r"'model\.bogus'"),
     ({"optim.lr": "high"}, r"'optim\.lr'")],
    ids=["through-a-value", "unknown-key", "wrong-type"],
)
def test_bad_override_raises_config_error(tmp_path: Path, overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_yaml(ExperimentConfig, write(tmp_path, "model:\n  n_q: 4\n"), overrides)


def test_parse_overrides_reads_yaml_scalars() -> None:
    parsed = parse_overrides(
        ["optim.lr=1e-3", "model.n_q = 4", "model.ratios=[4, 2]", "name=a=b", "quantizer_dropout=false", "note="]
    )
    assert parsed == {
        "optim.lr": 1e-3,
        "model.n_q": 4,
        "model.ratios": [4, 2],
        "name": "a=b",
        "quantizer_dropout": False,
        "note": None,
    }
    assert isinstance(parsed["optim.lr"], float)


def test_parsed_overrides_feed_load_yaml(tmp_path: Path) -> None:
    overrides = parse_overrides(["optim.lr=2e-4", "model.ratios=[2, 2]"])
    config = load_yaml(ExperimentConfig, write(tmp_path, ""), overrides)
    assert config.optim.lr == pytest.approx(2e-4)
    assert config.model.hop_length == 4


@pytest.mark.parametrize("item", ["optim.lr", "model.ratios=[4, 2", ""], ids=["no-equals", "malformed-value", "empty"])
def test_parse_overrides_errors(item: str) -> None:
    with pytest.raises(ConfigError, match="key=value|override"):
        parse_overrides([item])


@pytest.mark.parametrize("preset", PRESETS.values(), ids=PRESETS.keys())
def test_to_dict_round_trips_every_preset(preset: Callable[[], CodecConfig]) -> None:
    config = preset()
    assert from_dict(CodecConfig, to_dict(config)) == config


@pytest.mark.parametrize(
    "changes",
    [{"n_q": 0}, {"sample_rate": -1}, {"ratios": ()}, {"ratios": (4, 0)}, {"ema_decay": 1.0},
     {"epsilon": float("nan")}, {"dilation_base": -2}, {"kernel_size": 0}, {"lstm_layers": 9},
     {"dead_code_ratio": float("inf")}, {"n_q": 8.0}, {"codebook_size": True},
     {"n_filters": 512, "ratios": (2, 2, 2, 2)}, {"n_q": 64, "codebook_size": 65536, "dimension": 64}],
    ids=["n_q-0", "negative-rate", "no-ratios", "zero-ratio", "decay-1", "epsilon-nan", "negative-dilation",
         "kernel-0", "lstm-9", "dead-code-inf", "float-n_q", "bool-codebook-size", "widest-8192-channels",
         "codebooks-268M-values"],
)
def test_invalid_values_raise_config_error(changes: dict) -> None:
    with pytest.raises(ConfigError, match=next(iter(changes))):
        CodecConfig(**changes)
