"""``python -m train --config X.yaml`` and ``accelerate launch -m train --config X.yaml``: the same as ``codec train``."""

from codec.cli import run_module

if __name__ == "__main__":
    run_module("train")
