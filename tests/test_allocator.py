"""codec.allocator: freed activations stay in the process instead of being faulted in again."""

from __future__ import annotations

import subprocess
import sys

import pytest

_CHURN = """import resource, sys
import torch
from codec.allocator import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
x = torch.randn(1, 16, 32000)  # two seconds of 16-channel activations, 2 MB
conv = torch.nn.Conv1d(16, 16, 7, padding=3)
with torch.no_grad():
    conv(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):  # what a model call per chunk does: allocate, compute, free
        conv(torch.relu(conv(x)))
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(mode: str) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", _CHURN, mode], capture_output=True, text=True, check=True).stdout
    kept, faults = out.split()
    return kept == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_kept_memory_is_not_faulted_in_again() -> None:
    _, default = _page_faults("default")
    kept, faults = _page_faults("keep")
    assert kept
    assert default > 5000  # 50 calls x 2 MB outputs given back and faulted in: about 500 pages each
    assert faults < default / 10
