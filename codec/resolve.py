"""What ``--model`` names: a bundled model, a saved directory or an untrained preset, with its entropy tables.

Every command and script that takes a model resolves it here:

- ``None``: the bundled default model, :data:`DEFAULT_MODEL`;
- a directory written by :meth:`codec.network.model.Codec.save_pretrained`;
- the name of a model bundled with the package (:func:`codec.network.model.pretrained_names`);
- ``preset:NAME`` (``preset:16khz``, ``preset:24khz``, ``preset:tiny``): an
  untrained model of a preset architecture (:data:`codec.network.presets.PRESETS`),
  initialised from a fixed seed, with uniform entropy tables, so that the
  tools run before any model is trained.

This module imports torch only when a model is loaded, so that
:data:`DEFAULT_MODEL` costs nothing to read (command-line help).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from codec.errors import InputError, ModelNotFoundError

if TYPE_CHECKING:
    from codec.fileformat.entropy import EntropyTables
    from codec.network.model import Codec

#: The bundled model used when no ``--model`` is given.
DEFAULT_MODEL = "speech-16khz"
#: Prefix of an untrained preset architecture: ``preset:16khz``.
PRESET_PREFIX = "preset:"
#: What ``--model`` takes, for command-line help.
MODEL_HELP = (
    "a directory written by Codec.save_pretrained, a bundled model name, or preset:16khz / preset:24khz / "
    "preset:tiny for an untrained model"
)
#: Seed of the random initialisation of an untrained preset (the same weights every time).
PRESET_SEED = 0


@dataclass
class LoadedModel:
    """A codec with the name recorded in files and its entropy tables.

    Attributes:
        codec: The model, in eval mode.
        name: Bundled model name, or the config name for a model from a directory or preset.
        tables: Its entropy tables (uniform if the model has none).
        model_id: ``codec.model_id``, computed once.
    """

    codec: Codec
    name: str
    tables: EntropyTables
    model_id: str

    @classmethod
    def from_codec(cls, codec: Codec, tables: EntropyTables | None = None) -> LoadedModel:
        """Wraps an in-memory model (uniform tables unless given)."""
        from codec.fileformat.entropy import EntropyTables

        config = codec.config
        if tables is None:
            tables = EntropyTables.uniform(config.n_q, config.codebook_size)
        return cls(codec=codec.eval(), name=config.name, tables=tables, model_id=codec.model_id)


def load_model(spec: str | Path | None = None) -> LoadedModel:
    """The model that ``spec`` names (see the module docstring), in eval mode, with its entropy tables.

    Args:
        spec: A directory, a bundled name, ``preset:NAME``, or None for :data:`DEFAULT_MODEL`.

    Raises:
        ModelNotFoundError: If nothing matches; for the default model, says to pass ``--model``.
        InputError: On an unknown preset name.
    """
    from codec.fileformat.entropy import EntropyTables
    from codec.network.model import CONFIG_FILE, PRETRAINED_DIR, Codec, pretrained_names

    if spec is None:
        if DEFAULT_MODEL not in pretrained_names():
            raise ModelNotFoundError(
                f"the default model {DEFAULT_MODEL!r} is not installed; pass --model DIR "
                "(a directory written by Codec.save_pretrained)"
            )
        spec = DEFAULT_MODEL
    if str(spec).startswith(PRESET_PREFIX):
        return LoadedModel.from_codec(untrained_preset(str(spec)))
    directory = Path(spec)
    bundled = not (directory / CONFIG_FILE).is_file()
    codec = Codec.from_pretrained(spec)
    if bundled:
        directory = PRETRAINED_DIR / str(spec)
    config = codec.config
    tables = EntropyTables.load(directory, config.n_q, config.codebook_size)
    name = str(spec) if bundled else config.name
    return LoadedModel(codec=codec, name=name, tables=tables, model_id=codec.model_id)


def load_codec(spec: str | Path | None = None) -> Codec:
    """The model of :func:`load_model` alone."""
    return load_model(spec).codec


def untrained_preset(spec: str) -> Codec:
    """``preset:NAME``: an untrained model of that preset, initialised from :data:`PRESET_SEED`.

    The global random state is left as it was.

    Raises:
        InputError: If ``NAME`` is not a preset.
    """
    import torch

    from codec.network.model import Codec
    from codec.network.presets import PRESETS

    name = spec.removeprefix(PRESET_PREFIX)
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r} in {spec!r}; choose from {', '.join(PRESETS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(PRESET_SEED)
        return Codec(PRESETS[name]()).eval()
