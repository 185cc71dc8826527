"""EWC: the penalty is zero at θ*, exactly quadratic in the distance from it, the Fisher is the
mean of squared per-sample gradients, and it accumulates over tasks."""

from __future__ import annotations

import pytest
import torch
from micro_method import micro_method

from mcit.errors import ConfigError
from mcit.methods.base import method_class

ARGS = {
    "r": 4,
    "alpha": 8,
    "dropout": 0.0,
    "ewc_weight": 50.0,
    "fisher_batches": 3,
    "fisher_batch_size": 1,
}


@pytest.fixture
def setup(micro_backbone_dirs, micro_benchmark, tmp_path):
    return micro_method(micro_benchmark, tmp_path, "ewc", ARGS)


def _finish(setup, stage: int) -> None:
    method = setup.method
    method.begin_task(stage, setup.tasks[stage])
    setup.train(stage, steps=2)
    torch.manual_seed(1000 + stage)  # the runner seeds each stage; the Fisher's subset follows
    method.end_task(stage, setup.tasks[stage], setup.tasks[stage].train)


def test_penalty_is_zero_at_the_anchor_and_grows_quadratically(setup):
    method = setup.method
    assert method.penalty().item() == 0.0  # no Fisher before the first task ends
    _finish(setup, 0)
    assert method.penalty().item() == 0.0  # θ = θ* right after the task
    weights = method._weights()
    anchor = {n: p.detach().clone() for n, p in weights.items()}
    direction = {n: torch.randn_like(p) * 0.01 for n, p in weights.items()}

    def penalty_at(scale: float) -> float:
        with torch.no_grad():
            for n, p in weights.items():
                p.copy_(anchor[n] + scale * direction[n])
        return method.penalty().item()

    one, two, three = penalty_at(1.0), penalty_at(2.0), penalty_at(3.0)
    assert one > 0
    assert two == pytest.approx(4 * one, rel=1e-4)  # 2× the distance → 4× the penalty
    assert three == pytest.approx(9 * one, rel=1e-4)
    # The loss adds (λ/2) · penalty, λ = 50.
    batch = setup.batch(1)
    out = method.training_loss(batch)
    lm = method.backbone.lm_loss(method.lm_logits(batch), batch.labels)
    assert out.loss.item() == pytest.approx(lm.item() + 25.0 * three, rel=1e-5)
    assert out.parts["ewc"] == pytest.approx(three, rel=1e-6)


def test_fisher_is_the_mean_squared_per_sample_gradient(setup):
    method = setup.method
    method.begin_task(0, setup.tasks[0])
    setup.train(0, steps=2)
    samples = setup.tasks[0].train
    torch.manual_seed(7)
    fisher = method.task_fisher(samples)
    # The same three samples the method drew, by hand: F = (g1² + g2² + g3²) / 3.
    order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(7))[:3]
    weights = method._weights()
    expected = {n: torch.zeros_like(p) for n, p in weights.items()}
    for i in order.tolist():
        method.zero_grad(set_to_none=True)
        batch = setup.collate([samples[i]])
        method.backbone.lm_loss(method.lm_logits(batch), batch.labels).backward()
        for n, p in weights.items():
            expected[n] += p.grad**2 / 3
    assert all(torch.allclose(fisher[n], expected[n], rtol=1e-5, atol=1e-12) for n in weights)
    assert sum(f.sum() for f in fisher.values()) > 0


def test_fisher_accumulates_over_tasks_and_is_saved(setup):
    method = setup.method
    _finish(setup, 0)
    after_one = {n: method.fisher.of(n).clone() for n in method._weights()}
    method.begin_task(1, setup.tasks[1])
    setup.train(1, steps=2)
    torch.manual_seed(1001)
    second = method.task_fisher(setup.tasks[1].train)
    torch.manual_seed(1001)
    method.end_task(1, setup.tasks[1], setup.tasks[1].train)
    for n in after_one:
        assert torch.allclose(method.fisher.of(n), after_one[n] + second[n])  # F = F_1 + F_2
        assert torch.equal(method.anchor.of(n), method._weights()[n].detach())  # θ* = θ now
    total_one = sum(f.sum() for f in after_one.values())
    total_two = sum(method.fisher.of(n).sum() for n in after_one)
    assert total_two > total_one > 0
    state = method.method_state()  # F and θ* travel with the adapter
    assert sum(k.startswith("fisher.") for k in state) == len(after_one)
    assert sum(k.startswith("anchor.") for k in state) == len(after_one)


def test_bad_fisher_settings_are_config_errors():
    with pytest.raises(ConfigError, match="method.args.fisher_batches: 0 must be at least 1"):
        method_class("ewc", {"fisher_batches": 0})
