"""The gradient balancer gives each loss its weight's share of the gradient."""

from __future__ import annotations

import pytest
import torch

from train.balancer import Balancer


def _losses(x_hat: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    # Raw gradients that differ by about six orders of magnitude.
    return {"big": 1e4 * (x_hat - target).pow(2).mean(), "small": 1e-2 * (x_hat - 2 * target).abs().mean()}


@pytest.mark.parametrize("weights", [(1.0, 1.0), (3.0, 1.0), (1.0, 9.0)], ids=["equal", "3-to-1", "1-to-9"])
def test_shares_follow_weights(weights: tuple[float, float]) -> None:
    torch.manual_seed(0)
    balancer = Balancer({"big": weights[0], "small": weights[1]}, decay=0.9)
    target = torch.randn(4, 1, 256)
    for _ in range(20):
        x_hat = torch.randn(4, 1, 256, requires_grad=True)
        balancer.gradient(_losses(x_hat, target), x_hat)
    expected = weights[0] / sum(weights)
    assert balancer.last_shares["big"] == pytest.approx(expected, abs=0.03)
    assert balancer.last_shares["small"] == pytest.approx(1 - expected, abs=0.03)


def test_gradient_norm_is_about_total_norm() -> None:
    torch.manual_seed(0)
    balancer = Balancer({"big": 1.0, "small": 1.0}, decay=0.9)
    target = torch.randn(2, 1, 128)
    x_hat = torch.randn(2, 1, 128, requires_grad=True)
    grad = balancer.gradient(_losses(x_hat, target), x_hat)
    # First step: each term has norm share/1 of R = 1 per item; the sum's norm is at most 1.
    per_item = grad.flatten(1).norm(dim=1)
    assert 0.5 < float(per_item.mean()) <= 1.0 + 1e-5


def test_surrogate_backpropagates_balanced_gradient() -> None:
    torch.manual_seed(0)
    weight = torch.randn(1, 1, 64, requires_grad=True)
    target = torch.randn(3, 1, 64)
    balancer = Balancer({"big": 1.0, "small": 1.0})
    x_hat = weight * torch.ones(3, 1, 64)
    expected = torch.autograd.grad((x_hat * Balancer({"big": 1.0, "small": 1.0}).gradient(
        _losses(x_hat, target), x_hat)).sum(), weight, retain_graph=True)[0]
    balancer.surrogate(_losses(x_hat, target), x_hat).backward()
    torch.testing.assert_close(weight.grad, expected)


def test_zero_weight_losses_are_ignored_and_state_round_trips() -> None:
    balancer = Balancer({"big": 1.0, "small": 0.0})
    x_hat = torch.randn(2, 1, 32, requires_grad=True)
    balancer.gradient(_losses(x_hat, torch.zeros(2, 1, 32)), x_hat)
    assert set(balancer.last_shares) == {"big"}
    other = Balancer({"big": 1.0})
    other.load_state_dict(balancer.state_dict())
    assert other.state_dict() == balancer.state_dict()
