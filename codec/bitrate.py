"""Bitrate arithmetic of residual codes, shared by the model config and the file format.

Each code of a codebook of ``K`` entries carries ``log2 K`` bits before
entropy coding; ``n_q`` codebooks at ``F`` frames per second send
``n_q * F * log2 K`` bits per second. This module imports nothing heavy
(no torch), so that reading a file's header costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: Two bitrates this close (relative) name the same codebook count: ``1.5`` matches 1.5 kbps however it was rounded.
KBPS_REL_TOL = 1e-3


def bits_per_code(codebook_size: int) -> float:
    """Bits that one code of a ``codebook_size``-entry codebook carries before entropy coding: ``log2 K``."""
    return math.log2(codebook_size)


def bandwidth_kbps(n_q: int, frame_rate_hz: float, codebook_size: int) -> float:
    """Nominal kbit/s of ``n_q`` codebooks at ``frame_rate_hz`` frames per second, rounded to 6 decimals."""
    return round(n_q * frame_rate_hz * bits_per_code(codebook_size) / 1000.0, 6)


def bandwidths_kbps(n_q: int, frame_rate_hz: float, codebook_size: int) -> tuple[float, ...]:
    """:func:`bandwidth_kbps` of each codebook count ``1..n_q``."""
    return tuple(bandwidth_kbps(n, frame_rate_hz, codebook_size) for n in range(1, n_q + 1))


def codebooks_for_kbps(rates_kbps: Sequence[float], kbps: float) -> int | None:
    """The codebook count (1-based index into ``rates_kbps``) whose rate is ``kbps``, or None if none is."""
    for n, rate in enumerate(rates_kbps, start=1):
        if math.isclose(rate, kbps, rel_tol=KBPS_REL_TOL):
            return n
    return None
