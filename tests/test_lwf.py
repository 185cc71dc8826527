"""LwF: the distillation term is zero when the old and new models are equal, positive after a
step, hand-computed on a small case, and blind to every position that is not an answer."""

from __future__ import annotations

import math

import pytest
import torch
from micro_method import micro_method

from mcit.data.collate import IGNORE
from mcit.methods.lwf import distillation_loss

ARGS = {"r": 4, "alpha": 8, "dropout": 0.0, "distill_weight": 0.7, "temperature": 2.0}


@pytest.fixture
def setup(micro_backbone_dirs, micro_benchmark, tmp_path):
    return micro_method(micro_benchmark, tmp_path, "lwf", ARGS)


def _adapter(method) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in method.named_parameters() if p.requires_grad}


def test_hand_computed_kl_over_answer_positions_only():
    # One sequence of 4 positions, vocabulary 2; the labels make position 1 (which predicts
    # token 2) the only answer position.
    labels = torch.tensor([[IGNORE, IGNORE, 5, IGNORE]])
    old = torch.zeros(1, 4, 2)
    new = torch.zeros(1, 4, 2)
    old[0, 1] = torch.tensor([0.0, 2 * math.log(3)])  # /τ=2: softmax → p_old = (1/4, 3/4)
    # new logits 0: p_new = (1/2, 1/2). KL(p_old ‖ p_new) = 1/4 ln(1/2) + 3/4 ln(3/2).
    expected = 4 * (0.25 * math.log(0.5) + 0.75 * math.log(1.5))  # τ² = 4
    assert distillation_loss(old, new, labels, 2.0).item() == pytest.approx(expected, rel=1e-6)
    # Any change at a position that does not predict an answer token changes nothing...
    moved = new.clone()
    moved[0, 0] = torch.tensor([5.0, -5.0])
    moved[0, 2:] = torch.tensor([-3.0, 7.0])
    assert distillation_loss(old, moved, labels, 2.0).item() == pytest.approx(expected, rel=1e-6)
    # ...while the answer position does count.
    moved[0, 1] = torch.tensor([0.0, 2 * math.log(3)])
    assert distillation_loss(old, moved, labels, 2.0).item() == pytest.approx(0.0, abs=1e-7)
    # No answer position at all: no term.
    assert distillation_loss(old, new, torch.full((1, 4), IGNORE), 2.0).item() == 0.0


def test_distillation_is_zero_when_equal_and_positive_after_a_step(setup):
    method = setup.method
    method.begin_task(0, setup.tasks[0])
    first = method.training_loss(setup.batch(0))
    assert first.parts["distill"] == 0.0  # no old model on the first task
    setup.train(0, steps=3)
    method.end_task(0, setup.tasks[0], setup.tasks[0].train)
    after_first = _adapter(method)

    method.begin_task(1, setup.tasks[1])
    batch = setup.batch(1)
    out = method.training_loss(batch)
    assert out.parts["distill"] == 0.0  # old model = the model as the stage begins
    lm = method.backbone.lm_loss(method.lm_logits(batch), batch.labels)
    assert out.loss.item() == pytest.approx(lm.item(), rel=1e-6)

    optimizer = torch.optim.SGD(method.trainable_parameters(), lr=0.5)
    out.loss.backward()
    optimizer.step()
    after_step = _adapter(method)
    out = method.training_loss(batch)
    assert out.parts["distill"] > 0.0
    # The old model's pass swaps the snapshot in and back: the live weights are untouched,
    # and the snapshot is still the first stage's adapter.
    assert all(torch.equal(after_step[n], p) for n, p in _adapter(method).items())
    assert all(torch.equal(after_first[n], method._old_adapter[n]) for n in after_first)
    # The total is L + λ τ² KL with λ = 0.7 (τ² is inside `distill`).
    lm = method.backbone.lm_loss(method.lm_logits(batch), batch.labels)
    assert out.loss.item() == pytest.approx(lm.item() + 0.7 * out.parts["distill"], rel=1e-6)


def test_distillation_equals_the_old_models_kl_computed_directly(setup):
    method = setup.method
    method.begin_task(0, setup.tasks[0])
    setup.train(0, steps=3)
    batch = setup.batch(1)
    old_logits = method.lm_logits(batch).detach()
    method.begin_task(1, setup.tasks[1])
    with torch.no_grad():
        for p in method.trainable_parameters():
            p.add_(0.05 * torch.randn_like(p))
    new_logits = method.lm_logits(batch)
    expected = distillation_loss(old_logits, new_logits, batch.labels, 2.0).item()
    assert expected > 0
    assert method.training_loss(batch).parts["distill"] == pytest.approx(expected, rel=1e-5)
