"""Packages a trained generator as a bundled model, with entropy tables fitted on training speech.

    codec package RUN_DIR/model --name speech-16khz \
        --data ~/data/rvq/train.jsonl [--files 400] [--seconds 4]

Writes ``codec/pretrained/NAME/`` (``config.json``, ``model.safetensors``,
``entropy.safetensors``), where ``Codec.from_pretrained(NAME)`` and
``codec compress`` find it. The entropy tables count the codes of the first
``--seconds`` of ``--files`` training files spread evenly over the manifest,
with add-one smoothing (:func:`codec.fileformat.entropy.fit_counts`). Training data only:
the development split stays unseen.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

import torch

from codec.fileformat.entropy import EntropyTables, fit_counts
from codec.network.model import PRETRAINED_DIR
from codec.resolve import load_codec
from codec.sources import list_audio
from train.data import load_excerpt, probe


def package(model_dir: Path, name: str, data: list[str], files: int, seconds: float) -> Path:
    """Writes the bundled model ``name`` from ``model_dir``; returns its directory."""
    codec = load_codec(model_dir)
    codec.config = dataclasses.replace(codec.config, name=name)
    with torch.no_grad():  # the codes below and the tables must be those of the float16 weights users load
        for tensor in codec.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
    paths = [str(p) for source in data for p in list_audio(source)]
    step = max(len(paths) // files, 1)
    entries = probe(paths[::step][:files], 0.3)
    with torch.no_grad():
        batches = (codec.encode(load_excerpt(e, codec.sample_rate, seconds)[None]).codes for e in entries)
        counts = fit_counts(batches, codec.config.n_q, codec.config.codebook_size)
    target = PRETRAINED_DIR / name
    PRETRAINED_DIR.mkdir(exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=PRETRAINED_DIR.parent, prefix=f".{name}."))
    try:
        staging.chmod(0o755)
        codec.save_pretrained(staging, dtype=torch.float16)  # a few MB in the package; loads as float32
        EntropyTables(counts).save(staging)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


if __name__ == "__main__":  # python -m train.package: the same as `codec package`
    from codec.cli import run_module

    run_module("package")
