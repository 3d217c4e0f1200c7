"""``python -m train --config X.yaml`` and ``accelerate launch -m train --config X.yaml``."""

from __future__ import annotations

import argparse
import sys

from codec.errors import CodecError
from train.cli import add_arguments, run


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m train", description="train a codec from a YAML config")
    add_arguments(parser)
    try:
        return run(parser.parse_args())
    except CodecError as e:
        print(f"train: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
