"""O-LoRA: a LoRA block per task, only the current one trained, the orthogonality term (zero for
orthogonal A matrices, hand-computed otherwise), and inference summing all blocks."""

from __future__ import annotations

import pytest
import torch
from micro_method import micro_method
from peft.tuners.lora import LoraLayer
from torch import nn

ARGS = {"r": 4, "alpha": 8, "dropout": 0.0, "orthogonal_weight": 0.05}


@pytest.fixture
def setup(micro_backbone_dirs, micro_benchmark, tmp_path):
    return micro_method(micro_benchmark, tmp_path, "o-lora", ARGS)


def _lora_layers(method) -> list[LoraLayer]:
    return [m for m in method.backbone.language_model.modules() if isinstance(m, LoraLayer)]


def test_a_block_per_task_and_only_the_current_one_gets_gradient(setup):
    method = setup.method
    assert method.trainable_parameters() == []  # blocks are created per task
    per_block = None
    for stage in range(3):
        method.begin_task(stage, setup.tasks[stage])
        blocks = [f"task{s}" for s in range(stage + 1)]
        layers = _lora_layers(method)
        assert len(layers) == 14  # every LM linear of the 2-layer micro LM
        for layer in layers:
            assert sorted(layer.lora_A) == blocks and layer.active_adapters == blocks
        trainable = sum(p.numel() for p in method.trainable_parameters())
        per_block = per_block or trainable
        assert trainable == per_block  # one block's worth, whatever the number of tasks
        # B of the current block starts at zero, so give it a value: the LM loss then reaches A.
        for layer in layers:
            nn.init.normal_(layer.lora_B[blocks[-1]].weight, std=0.1)
        method.zero_grad(set_to_none=True)
        method.training_loss(setup.batch(stage)).loss.backward()
        for layer in layers:
            for block in blocks:
                for part in (layer.lora_A[block].weight, layer.lora_B[block].weight):
                    if block == blocks[-1]:
                        assert part.grad is not None and part.grad.abs().sum() > 0
                    else:
                        assert part.grad is None and not part.requires_grad
    # Old blocks are saved although frozen: the state holds all three.
    state = method.method_state()
    assert {k.split(".lora_")[1].split(".")[1] for k in state} == {"task0", "task1", "task2"}


def test_orthogonality_is_zero_for_orthogonal_a_and_hand_computed_otherwise(setup):
    method = setup.method
    for stage in range(3):
        method.begin_task(stage, setup.tasks[stage])
    layers = _lora_layers(method)
    with torch.no_grad():
        for layer in layers:
            eye = torch.eye(layer.in_features)
            for s in range(3):  # rows s*r .. s*r+r-1 of the identity: mutually orthogonal
                layer.lora_A[f"task{s}"].weight.copy_(eye[4 * s : 4 * s + 4])
    assert method.orthogonality().item() == 0.0
    # A_2 = 3 · A_0: A_2 A_0ᵀ = 3 I_4 (‖·‖₁ = 12) and A_2 A_1ᵀ = 0, in each of the 14 layers.
    with torch.no_grad():
        for layer in layers:
            layer.lora_A["task2"].weight.copy_(3 * layer.lora_A["task0"].weight)
    assert method.orthogonality().item() == pytest.approx(14 * 12.0)
    batch = setup.batch(2)
    out = method.training_loss(batch)
    lm = method.backbone.lm_loss(method.lm_logits(batch), batch.labels)
    assert out.loss.item() == pytest.approx(lm.item() + 0.05 * 14 * 12.0, rel=1e-6)
    assert out.parts["orthogonal"] == pytest.approx(168.0)


def test_first_task_has_no_orthogonality_term(setup):
    method = setup.method
    method.begin_task(0, setup.tasks[0])
    assert method.orthogonality().item() == 0.0


def test_inference_sums_all_blocks(setup):
    method = setup.method
    for stage in range(3):
        method.begin_task(stage, setup.tasks[stage])
    layers = _lora_layers(method)
    with torch.no_grad():
        for layer in layers:
            for s in range(3):
                nn.init.normal_(layer.lora_B[f"task{s}"].weight, std=0.2)
    layer = layers[0]
    x = torch.randn(2, 5, layer.in_features)
    expected = layer.base_layer(x)
    for s in range(3):
        block = f"task{s}"
        expected = expected + (x @ layer.lora_A[block].weight.T @ layer.lora_B[block].weight.T) * (
            8 / 4
        )
    assert torch.allclose(layer(x), expected, atol=1e-5)
    # Generation goes through the same layers: dropping the last block changes the answer logits.
    batch = setup.batch(0)
    all_blocks = method.lm_logits(batch)
    with torch.no_grad():
        for each in layers:
            each.lora_B["task2"].weight.zero_()
    assert not torch.allclose(all_blocks, method.lm_logits(batch), atol=1e-4)
