"""``python -m codec.cli``: the same as the ``codec`` command."""

import sys

from codec.cli import main

sys.exit(main())
