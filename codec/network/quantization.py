"""Residual vector quantization with EMA codebooks.

Each of the ``n_q`` levels quantizes what the previous levels left over::

    r_0 = z                     z: encoder output, one D-dim vector per frame
    c_l = argmin_k ||r_l - e_l[k]||        (code of level l)
    r_{l+1} = r_l - sg(e_l[c_l])           (sg: stop-gradient)
    z_hat = z + sg(sum_l e_l[c_l] - z)     (straight-through, once for all levels)

The stop-gradient sits on the codebook vector, not on the residual, so the
commitment loss of every level reaches the encoder (the fault of encodec #25
and DAC #107 was the reverse). Codebooks are not trained by gradients but by
exponential moving averages of the vectors assigned to them (van den Oord et
al. 2017; EnCodec), initialised by k-means on the first training batch, and a
code whose EMA usage falls below ``dead_code_ratio`` times the mean usage is
restarted from a randomly chosen current residual (Mimi's rule).

In multi-process training (``torch.distributed`` initialised, e.g. by
``accelerate launch``) the EMA counts and sums are all-reduced, so every
process keeps the same codebooks; k-means runs on rank 0's batch and restarts
use rank 0's residuals, both broadcast to the other ranks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from codec.measures import perplexity
from codec.network.config import CodecConfig


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce_(t: Tensor) -> Tensor:
    if _distributed():
        dist.all_reduce(t)
    return t


def _broadcast_(t: Tensor) -> Tensor:
    if _distributed():
        dist.broadcast(t, src=0)
    return t


def _every_rank_has(n: int, device: torch.device) -> bool:
    """Whether ``n > 0`` on every process (so collective calls stay in step)."""
    if not _distributed():
        return n > 0
    t = torch.tensor(n, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t > 0)


def kmeans(x: Tensor, k: int, iters: int) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means.

    Args:
        x: Vectors ``[N, D]``.
        k: Number of centroids. If ``N < k`` the start points repeat.
        iters: Iterations.

    Returns:
        Centroids ``[k, D]`` and the number of vectors assigned to each ``[k]``.
    """
    n = x.shape[0]
    start = torch.randperm(n, device=x.device)[:k] if n >= k else torch.randint(n, (k,), device=x.device)
    centroids = x[start].clone()
    counts = torch.zeros(k, device=x.device)
    for _ in range(iters):
        assign = _nearest(x, centroids)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        centroids = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centroids)
    return centroids, counts


@dataclass
class SearchTables:
    """What the nearest-code search reads besides the codebook: ``embed^T`` [D, K], ``||e||^2`` [K], ``max ||e||^2``."""

    embed_t: Tensor
    norms: Tensor
    max_norm: float

    @classmethod
    def of(cls, embed: Tensor) -> SearchTables:
        """The tables of codebook ``embed`` [K, D]."""
        norms = embed.pow(2).sum(1)  # [K]
        return cls(embed.t().contiguous(), norms, float(norms.max()) if norms.numel() else 0.0)


def _nearest(x: Tensor, embed: Tensor, tables: SearchTables | None = None) -> Tensor:
    """Index of the nearest row of ``embed`` [K, D] for each row of ``x`` [N, D].

    The fast matrix-product distance ``||e||^2 - 2 x.e`` (``||x||^2`` does
    not change the order) carries a rounding error that depends on the batch
    shape and can exceed the gap between two close codes: the same frame
    would get a different code when encoded alone, in a batch or in
    streaming chunks. Floating-point dot products of length ``D`` in any
    summation order err by at most ``gamma_D = D u / (1 - D u)`` (``u`` the
    unit roundoff) times ``||x|| ||e|| <= (||x||^2 + ||e||^2) / 2``, so two
    codes' fast distances can swap only when they lie within ``4 gamma_D
    (||x||^2 + max ||e||^2)`` of each other. A row whose best code is alone
    in that band (its second-best fast distance lies outside) takes it; the
    rare row with company picks among the band by ``||x - e||^2`` computed
    element by element, the lowest index on a tie. ``tables`` (from
    :meth:`SearchTables.of`, else computed here) holds what depends on the
    codebook alone.
    """
    tables = tables if tables is not None else SearchTables.of(embed)
    if embed.shape[0] < 2:
        return x.new_zeros(x.shape[0], dtype=torch.long)
    approx = torch.addmm(tables.norms, x, tables.embed_t, alpha=-2)  # [N, K]
    if torch.jit.is_tracing():  # a traced graph cannot hold the data-dependent branch below: the fast distance
        return approx.argmin(-1)
    two, indices = approx.topk(2, dim=-1, largest=False)  # [N, 2] each, ascending
    (best, second), codes = two.unbind(1), indices.select(1, 0)  # [N] each
    unit = torch.finfo(approx.dtype).eps / 2
    gamma = x.shape[1] * unit / (1 - x.shape[1] * unit)
    limit = x.pow(2).sum(1).add_(tables.max_norm).mul_(4 * gamma).add_(best)  # [N]: best + band
    company = second <= limit  # [N]
    if company.any():  # a row whose best code has company in its band (few rows)
        rows = company.nonzero().squeeze(1)  # [M]
        near = approx[rows] <= limit[rows, None]  # [M, K]
        row, code = near.nonzero(as_tuple=True)  # candidate pairs, codes ascending within a row
        exact = (x[rows[row]] - embed[code]).pow(2).sum(-1)  # [P]
        lowest = exact.new_full((rows.numel(),), float("inf")).scatter_reduce(0, row, exact, "amin")  # [M]
        tied = exact == lowest[row]
        codes[rows] = torch.full_like(rows, embed.shape[0]).scatter_reduce(0, row[tied], code[tied], "amin")
    return codes


class EMACodebook(nn.Module):
    """One codebook of ``size`` vectors of dimension ``dim``, trained by EMA.

    Args:
        dim: Vector dimension.
        size: Number of codes.
        decay: EMA decay.
        epsilon: Laplace smoothing of cluster sizes.
        kmeans_iters: Iterations of the k-means initialisation.
        dead_code_ratio: Restart threshold as a fraction of the mean usage.
    """

    def __init__(
        self, dim: int, size: int, decay: float, epsilon: float, kmeans_iters: int, dead_code_ratio: float
    ) -> None:
        super().__init__()
        self.size, self.decay, self.epsilon = size, decay, epsilon
        self.kmeans_iters, self.dead_code_ratio = kmeans_iters, dead_code_ratio
        self.register_buffer("initialized", torch.tensor(False))
        self.register_buffer("embed", torch.randn(size, dim))
        self.register_buffer("embed_avg", self.embed.clone())
        self.register_buffer("cluster_size", torch.ones(size))
        self.register_buffer("restarts", torch.tensor(0, dtype=torch.long))
        self._tables: SearchTables | None = None
        self._tables_key: tuple | None = None

    def encode(self, x: Tensor) -> Tensor:
        """Codes ``[N]`` of vectors ``[N, D]``."""
        return _nearest(x, self.embed, self.search_tables())

    def search_tables(self) -> SearchTables:
        """The search tables of the codebook, rebuilt only after it changes (training, loading, moving)."""
        try:
            key = (self.embed.data_ptr(), self.embed._version, self.embed.shape)
        except RuntimeError:  # a codebook made under torch.inference_mode() has no version counter
            return SearchTables.of(self.embed)
        if self._tables_key != key:
            self._tables, self._tables_key = SearchTables.of(self.embed), key
        return self._tables

    def decode(self, codes: Tensor) -> Tensor:
        """Vectors ``[..., D]`` of codes ``[...]``."""
        return F.embedding(codes, self.embed)

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """K-means initialisation from the vectors ``x`` [N, D] (rank 0's, when distributed)."""
        centroids, counts = kmeans(x.float(), self.size, self.kmeans_iters)
        self.embed.copy_(_broadcast_(centroids))
        self.cluster_size.copy_(_broadcast_(counts))
        self.embed_avg.copy_(self.embed * self.cluster_size[:, None])
        self.initialized.fill_(True)

    @torch.no_grad()
    def update(self, x: Tensor, codes: Tensor) -> None:
        """One EMA step from vectors ``x`` [N, D] assigned to ``codes`` [N], then dead-code restarts."""
        x = x.float()
        counts = _all_reduce_(torch.bincount(codes, minlength=self.size).float())
        sums = _all_reduce_(torch.zeros_like(self.embed).index_add_(0, codes, x))
        self.cluster_size.lerp_(counts, 1 - self.decay)
        self.embed_avg.lerp_(sums, 1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.epsilon) / (total + self.size * self.epsilon) * total
        self.embed.copy_(self.embed_avg / smoothed[:, None])
        if _every_rank_has(x.shape[0], x.device):
            self._restart_dead(x)

    def dead_mask(self) -> Tensor:
        """``[K]`` booleans: codes whose EMA usage is below the restart threshold."""
        return self.cluster_size < self.dead_code_ratio * self.cluster_size.mean()

    def _restart_dead(self, x: Tensor) -> None:
        dead = self.dead_mask()
        n_dead = int(dead.sum())
        if n_dead == 0:
            return
        samples = _broadcast_(x[torch.randint(x.shape[0], (n_dead,), device=x.device)])
        usage = self.cluster_size.mean()
        self.embed[dead] = samples
        self.embed_avg[dead] = samples * usage
        self.cluster_size[dead] = usage
        self.restarts += n_dead


@dataclass
class QuantizerOutput:
    """What :class:`ResidualVectorQuantizer` returns.

    Attributes:
        quantized: Quantized latent ``[B, D, F]`` with a straight-through gradient.
        codes: Codes ``[B, n_q, F]`` (int64).
        commitment_loss: Mean over levels of ``||r_l - sg(e_l[c_l])||^2``.
        first_quantized: The first level's quantized latent ``[B, D, F]`` with a
            straight-through gradient (what a semantic head reads).
        n_q_per_item: Codebooks used by each batch item ``[B]``.
        metrics: Per-level scalars: ``perplexity/l``, ``dead/l``, ``restarts/l``.
    """

    quantized: Tensor
    codes: Tensor
    commitment_loss: Tensor
    first_quantized: Tensor
    n_q_per_item: Tensor
    metrics: dict[str, float] = field(default_factory=dict)


class ResidualVectorQuantizer(nn.Module):
    """``n_q`` EMA codebooks applied to successive residuals (see module docstring)."""

    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        self.n_q = config.n_q
        self.dropout = config.quantizer_dropout
        self.bypass = config.quantizer_bypass
        self.levels = nn.ModuleList(
            EMACodebook(
                config.dimension,
                config.codebook_size,
                config.ema_decay,
                config.epsilon,
                config.kmeans_iters,
                config.dead_code_ratio,
            )
            for _ in range(config.n_q)
        )

    def forward(self, z: Tensor, n_q: int | None = None) -> QuantizerOutput:
        """Quantizes the latent ``z`` [B, D, F].

        In training mode the codebooks are updated (k-means on first use, EMA,
        dead-code restarts); with quantizer dropout, item ``b`` uses a random
        number of levels ``n_q_per_item[b]`` in ``1..n_q``; with quantizer
        bypass, a random share of the items passes ``z`` through unquantized.

        Args:
            z: Encoder output ``[B, D, F]``.
            n_q: Levels to use (default all); with dropout, the maximum.

        Returns:
            A :class:`QuantizerOutput`.
        """
        n_q = n_q or self.n_q
        batch, dim, frames = z.shape
        if self.training and self.dropout:
            per_item = torch.randint(1, n_q + 1, (batch,), device=z.device)
        else:
            per_item = torch.full((batch,), n_q, device=z.device)
        residual = z.transpose(1, 2)  # [B, F, D]
        total = torch.zeros_like(residual)
        codes, losses, metrics = [], [], {}
        first = residual
        for level, codebook in enumerate(self.levels[:n_q]):
            active = per_item > level  # [B]
            vectors = residual.detach()[active].reshape(-1, dim)  # [N, D]
            if self.training and not bool(codebook.initialized) and _every_rank_has(len(vectors), z.device):
                codebook.initialize(vectors)
            idx = codebook.encode(residual.detach().reshape(-1, dim)).view(batch, frames)  # [B, F]
            q = codebook.decode(idx)  # [B, F, D]
            if self.training and bool(codebook.initialized):
                codebook.update(vectors, idx[active].reshape(-1))
            if vectors.shape[0]:
                losses.append(F.mse_loss(residual[active], q[active].detach()))
                if self.training:
                    metrics.update(self._level_metrics(level, codebook, idx[active]))
            if level == 0:
                first = residual + (q - residual).detach()
            total = total + q * active[:, None, None]
            residual = residual - q.detach()
            codes.append(idx)
        z_t = z.transpose(1, 2)
        quantized = z_t + (total - z_t).detach()
        if self.training and self.bypass > 0:
            skip = torch.rand(batch, device=z.device) < self.bypass  # [B]: these items are not quantized
            quantized = torch.where(skip[:, None, None], z_t, quantized)
        commitment = torch.stack(losses).mean() if losses else z.new_zeros(())
        return QuantizerOutput(
            quantized=quantized.transpose(1, 2),  # [B, D, F]
            codes=torch.stack(codes, dim=1),  # [B, n_q, F]
            commitment_loss=commitment,
            first_quantized=first.transpose(1, 2),
            n_q_per_item=per_item,
            metrics=metrics,
        )

    @staticmethod
    def _level_metrics(level: int, codebook: EMACodebook, idx: Tensor) -> dict[str, float]:
        counts = torch.bincount(idx.reshape(-1), minlength=codebook.size)
        return {
            f"perplexity/{level + 1}": float(perplexity(counts)),
            f"dead/{level + 1}": float(codebook.dead_mask().float().mean()),
            f"restarts/{level + 1}": float(codebook.restarts),
        }

    def encode(self, z: Tensor, n_q: int) -> Tensor:
        """Codes ``[B, n_q, F]`` of the latent ``z`` [B, D, F] (no codebook update)."""
        return self._encode(z, n_q, with_latent=False)[0]

    def encode_decode(self, z: Tensor, n_q: int) -> tuple[Tensor, Tensor]:
        """Codes ``[B, n_q, F]`` of ``z`` [B, D, F] and their latent ``[B, D, F]``, equal to
        ``decode(codes)``: the codewords the search picked, summed in the same order."""
        codes, latent = self._encode(z, n_q, with_latent=True)
        return codes, latent

    def _encode(self, z: Tensor, n_q: int, with_latent: bool) -> tuple[Tensor, Tensor | None]:
        batch, dim, frames = z.shape
        residual = z.transpose(1, 2).reshape(-1, dim)  # [B * F, D]
        codes, total = [], None
        for level, codebook in enumerate(self.levels[:n_q]):
            idx = codebook.encode(residual)  # [B * F]
            if level + 1 < n_q or with_latent:  # the last level's codeword only for the latent
                q = codebook.decode(idx)
                residual = residual - q
                if with_latent:
                    total = q if total is None else total + q
            codes.append(idx)
        codes = torch.stack(codes).view(n_q, batch, frames).transpose(0, 1).contiguous()  # [B, n_q, F]
        if not with_latent:
            return codes, None
        return codes, total.view(batch, frames, dim).transpose(1, 2)

    def decode(self, codes: Tensor) -> Tensor:
        """Latent ``[B, D, F]`` of codes ``[B, n, F]`` (``n <= n_q``)."""
        out = sum(level.decode(c) for level, c in zip(self.levels, codes.unbind(1)))  # [B, F, D]
        return out.transpose(1, 2)
