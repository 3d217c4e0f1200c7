"""Residual VQ: k-means init, EMA updates, dead-code restarts, gradients, dropout."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

import pytest
import torch

from codec.network.config import CodecConfig
from codec.network.model import Codec
from codec.network.presets import codec_tiny_config
from codec.network.quantization import EMACodebook, ResidualVectorQuantizer, _nearest

DIM = 8
Speech = Callable[..., torch.Tensor]


def clustered_data(n_clusters: int, per_cluster: int, spread: float = 0.02) -> tuple[torch.Tensor, torch.Tensor]:
    """Points around ``n_clusters`` well-separated centres: ``(centres [K, D], points [N, D])``."""
    torch.manual_seed(1)
    centres = torch.randn(n_clusters, DIM) * 4.0
    labels = torch.arange(n_clusters).repeat_interleave(per_cluster)
    return centres, centres[labels] + spread * torch.randn(len(labels), DIM)


def nearest_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """For each row of ``a`` [N, D], the distance to the closest row of ``b`` [M, D]."""
    return torch.cdist(a, b).min(dim=1).values


def make_codebook(size: int = 16, decay: float = 0.99, dead_code_ratio: float = 0.1) -> EMACodebook:
    """A seeded codebook of ``size`` random ``DIM``-dimensional vectors."""
    torch.manual_seed(0)
    return EMACodebook(DIM, size, decay=decay, epsilon=1e-5, kmeans_iters=10, dead_code_ratio=dead_code_ratio)


def quantizer_config(**changes: object) -> CodecConfig:
    """The tiny preset with ``DIM``-dimensional latents and ``changes``."""
    return dataclasses.replace(codec_tiny_config(), dimension=DIM, **changes)


def fit_codebook_directly(data: torch.Tensor) -> torch.Tensor:
    """Codebook vectors ``[K, D]`` after :meth:`EMACodebook.initialize` on ``data`` [N, D]."""
    codebook = make_codebook(size=64)
    codebook.initialize(data)
    assert bool(codebook.initialized)
    assert codebook.cluster_size.sum() == len(data)
    return codebook.embed


def fit_codebook_in_training(data: torch.Tensor) -> torch.Tensor:
    """First-level codebook vectors ``[K, D]`` after one training forward of the RVQ on ``data`` [N, D]."""
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(quantizer_config(quantizer_dropout=False)).train()
    z = data.reshape(4, -1, DIM).transpose(1, 2)  # [B, D, F]
    rvq(z)
    return rvq.levels[0].embed


@pytest.mark.parametrize("fit", [fit_codebook_directly, fit_codebook_in_training], ids=["initialize", "first-batch"])
def test_kmeans_init_puts_codes_on_the_data(fit: Callable[[torch.Tensor], torch.Tensor]) -> None:
    centres, data = clustered_data(n_clusters=5, per_cluster=80)
    embed = fit(data)
    assert nearest_distance(centres, embed).max() < 0.1, "a cluster has no codebook vector near its centre"
    assert nearest_distance(embed, data).max() < 0.1, "a codebook vector lies away from every data point"


def planted_codebook(dead: int) -> tuple[EMACodebook, torch.Tensor]:
    """A 16-code book placed on 16 clusters, with data for every cluster but ``dead``'s.

    Returns:
        The codebook (code ``dead`` has a near-zero usage) and the data ``[N, D]``.
    """
    centres, _ = clustered_data(n_clusters=16, per_cluster=1)
    codebook = make_codebook(size=16)
    labels = torch.tensor([k for k in range(16) if k != dead]).repeat(20)
    data = centres[labels] + 0.02 * torch.randn(len(labels), DIM)
    codebook.embed.copy_(centres)
    codebook.cluster_size.fill_(20.0)
    codebook.cluster_size[dead] = 0.01  # forced low: the code was never used
    codebook.embed_avg.copy_(codebook.embed * codebook.cluster_size[:, None])
    codebook.initialized.fill_(True)
    return codebook, data


def test_dead_code_restart_revives_an_unused_code() -> None:
    dead = 3
    codebook, data = planted_codebook(dead)
    codes = codebook.encode(data)
    assert not (codes == dead).any()
    old_vector = codebook.embed[dead].clone()
    assert codebook.dead_mask().nonzero().flatten().tolist() == [dead]

    codebook.update(data, codes)

    assert int(codebook.restarts) == 1
    revived = codebook.embed[dead]
    assert not torch.allclose(revived, old_vector)
    assert nearest_distance(revived[None], data).item() < 1e-6, "the restarted code is not a data point"
    assert codebook.encode(revived[None]).item() == dead, "the restarted code is still never chosen"
    assert not codebook.dead_mask().any()


def test_ema_update_moves_a_used_code_toward_its_assigned_mean() -> None:
    codebook = make_codebook(size=16, decay=0.9)
    used = 5
    target = codebook.embed[used] + 3.0
    data = target + 0.1 * torch.randn(40, DIM)
    before = codebook.embed.clone()

    codebook.update(data, torch.full((len(data),), used))

    mean = data.mean(dim=0)
    step = codebook.embed[used] - before[used]
    assert (codebook.embed[used] - mean).norm() < (before[used] - mean).norm()
    assert torch.nn.functional.cosine_similarity(step, mean - before[used], dim=0) > 0.999
    others = torch.arange(16) != used
    torch.testing.assert_close(codebook.embed[others], before[others], atol=1e-3, rtol=1e-3)
    assert int(codebook.restarts) == 0


def level_loss(rvq: ResidualVectorQuantizer, z: torch.Tensor, level: int) -> torch.Tensor:
    """Commitment loss of level ``level`` (1-based) alone, from the mean over levels that the RVQ returns."""
    loss = rvq(z, n_q=level).commitment_loss * level
    if level > 1:
        loss = loss - rvq(z, n_q=level - 1).commitment_loss * (level - 1)
    return loss


@pytest.mark.parametrize("level", [1, 2, 3, 4], ids=lambda n: f"level{n}")
def test_commitment_gradient_of_every_level_reaches_the_encoder(
    fitted_codec: Codec, speech: Speech, level: int
) -> None:
    wav = speech(fitted_codec.sample_rate, index=1, seconds=0.25).requires_grad_(True)
    loss = level_loss(fitted_codec.quantizer, fitted_codec.encoder(wav), level)
    loss.backward()
    assert loss.item() > 0
    assert wav.grad is not None and wav.grad.abs().sum() > 0
    first_conv = fitted_codec.encoder[0].conv.parametrizations.weight.original1
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0


def test_level2_commitment_gradient_is_on_the_residual_not_the_codebook(fitted_codec: Codec, speech: Speech) -> None:
    """d/dz mse(z - sg(e0), sg(e1)) = 2 (z - e0 - e1) / N: the stop-gradient sits on the code vectors."""
    rvq = fitted_codec.quantizer
    with torch.no_grad():
        z = fitted_codec.encoder(speech(fitted_codec.sample_rate, index=1, seconds=0.25))
    z.requires_grad_(True)
    level_loss(rvq, z, level=2).backward()
    codes = rvq.encode(z.detach(), n_q=2)
    e0 = rvq.levels[0].decode(codes[:, 0]).transpose(1, 2)  # [B, D, F]
    e1 = rvq.levels[1].decode(codes[:, 1]).transpose(1, 2)
    expected = 2 * (z.detach() - e0 - e1) / z.numel()
    assert expected.abs().max() > 0
    torch.testing.assert_close(z.grad, expected, atol=1e-7, rtol=1e-4)


@pytest.mark.parametrize("field", ["quantized", "first_quantized"])
def test_straight_through_gradient_is_identity(fitted_codec: Codec, field: str) -> None:
    torch.manual_seed(2)
    z = (0.1 * torch.randn(2, fitted_codec.config.dimension, 7)).requires_grad_(True)
    weights = torch.randn(2, fitted_codec.config.dimension, 7)
    out = fitted_codec.quantizer(z)
    (getattr(out, field) * weights).sum().backward()
    torch.testing.assert_close(z.grad, weights, atol=0, rtol=0)


def test_dropout_varies_codebooks_per_item_and_ignores_later_codes() -> None:
    torch.manual_seed(3)
    rvq = ResidualVectorQuantizer(quantizer_config(quantizer_dropout=True)).train()
    _, data = clustered_data(n_clusters=6, per_cluster=64)
    z = data[torch.randperm(len(data))].reshape(16, -1, DIM).transpose(1, 2)  # [B, D, F]
    rvq(z)  # first batch: k-means initialisation
    before = copy.deepcopy(rvq)  # the codebooks as the next forward reads them
    out = rvq(z)

    per_item = out.n_q_per_item
    assert per_item.min() >= 1 and per_item.max() <= rvq.n_q
    assert len(per_item.unique()) > 1
    for b, n in enumerate(per_item.tolist()):
        expected = before.decode(out.codes[b : b + 1, :n])[0]  # [D, F]
        torch.testing.assert_close(out.quantized[b], expected, atol=1e-5, rtol=0)


def test_no_dropout_in_eval_mode(fitted_codec: Codec) -> None:
    z = torch.randn(5, fitted_codec.config.dimension, 3)
    assert fitted_codec.quantizer.dropout
    assert fitted_codec.quantizer(z).n_q_per_item.tolist() == [fitted_codec.config.n_q] * 5


@pytest.mark.parametrize("n_q", [1, 2, 4])
def test_eval_forward_codes_equal_encode_and_leave_codebooks_alone(
    fitted_codec: Codec, speech: Speech, n_q: int
) -> None:
    with torch.no_grad():
        z = fitted_codec.encoder(speech(fitted_codec.sample_rate, index=2, seconds=0.5))
    buffers = {k: v.clone() for k, v in fitted_codec.quantizer.state_dict().items()}
    out = fitted_codec.quantizer(z, n_q=n_q)
    assert out.codes.shape == (1, n_q, z.shape[-1])
    assert out.codes.dtype == torch.int64
    assert torch.equal(out.codes, fitted_codec.quantizer.encode(z, n_q))
    for key, value in fitted_codec.quantizer.state_dict().items():
        assert torch.equal(value, buffers[key]), f"{key} changed in eval mode"


def test_training_forward_updates_codebooks_and_reports_metrics(fitted_codec: Codec, speech: Speech) -> None:
    rvq = fitted_codec.quantizer.train()
    with torch.no_grad():
        z = fitted_codec.encoder(speech(fitted_codec.sample_rate, index=2, seconds=0.5))
    before = rvq.levels[0].embed.clone()
    out = rvq(z)
    assert not torch.equal(rvq.levels[0].embed, before)
    for level in range(1, int(out.n_q_per_item.max()) + 1):
        assert 1.0 <= out.metrics[f"perplexity/{level}"] <= fitted_codec.config.codebook_size
        assert 0.0 <= out.metrics[f"dead/{level}"] <= 1.0
    assert out.commitment_loss.item() > 0


def test_quantized_latent_approaches_the_input_as_levels_are_added(fitted_codec: Codec, speech: Speech) -> None:
    """Each level quantizes what the previous ones left, so the error falls with every level on speech."""
    with torch.no_grad():
        z = fitted_codec.encoder(speech(fitted_codec.sample_rate, index=0, seconds=1.0))
        errors = [
            (fitted_codec.quantizer.decode(fitted_codec.quantizer.encode(z, n)) - z).pow(2).mean().item()
            for n in range(1, fitted_codec.config.n_q + 1)
        ]
    assert errors == sorted(errors, reverse=True), errors


def test_nearest_code_is_exact_batch_invariant_and_takes_the_lowest_index_on_a_tie() -> None:
    """The nearest code matches a float64 search, whatever the batch split; duplicate codes go to the lower index."""
    torch.manual_seed(0)
    embed = torch.randn(256, 16)
    embed[9] = embed[200]  # a duplicate code
    x = torch.cat([embed[torch.randint(256, (300,))] + 0.05 * torch.randn(300, 16), embed[200].repeat(4, 1)])
    codes = _nearest(x, embed)
    distances = torch.cdist(x.double(), embed.double())  # [N, K]
    assert torch.equal(distances.gather(1, codes[:, None]), distances.min(1, keepdim=True).values)
    assert (codes[-4:] == 9).all()
    for size in (1, 7, 64):
        assert torch.equal(torch.cat([_nearest(part, embed) for part in x.split(size)]), codes)
