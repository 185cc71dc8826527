"""MoELoRA: E experts of rank r/E per targeted linear, a dense softmax gate per token, the frozen
layer when B = 0, and one shared set of experts trained on every task."""

from __future__ import annotations

import pytest
import torch
from micro_method import micro_method
from torch import nn

from mcit.errors import ConfigError
from mcit.methods.base import method_class
from mcit.methods.finetune_lora import LLAMA_LINEARS
from mcit.methods.moelora import MoELoraLinear

ARGS = {"r": 8, "alpha": 16, "experts": 4, "dropout": 0.0}


@pytest.fixture
def setup(micro_backbone_dirs, micro_benchmark, tmp_path):
    return micro_method(micro_benchmark, tmp_path, "moelora", ARGS)


def _layers(method) -> list[tuple[str, MoELoraLinear]]:
    lm = method.backbone.language_model
    return [(n, m) for n, m in lm.named_modules() if isinstance(m, MoELoraLinear)]


def test_every_targeted_linear_gets_e_experts_of_rank_r_over_e(setup):
    method = setup.method
    layers = _layers(method)
    lm_layers = method.backbone.model.config.text_config.num_hidden_layers
    assert len(layers) == lm_layers * len(LLAMA_LINEARS) == 14
    assert sorted({n.rsplit(".", 1)[-1] for n, _ in layers}) == sorted(LLAMA_LINEARS)
    expected_trainable = 0
    for _, layer in layers:
        d_in, d_out = layer.base_layer.in_features, layer.base_layer.out_features
        assert layer.lora_A.shape == (4, 2, d_in)  # E = 4 experts of rank r/E = 8/4 = 2
        assert layer.lora_B.shape == (4, d_out, 2)
        assert layer.router.weight.shape == (4, d_in) and layer.router.bias is None
        assert layer.scaling == 16 / 8  # α/r with the total rank
        assert not layer.base_layer.weight.requires_grad
        expected_trainable += 8 * d_in + 8 * d_out + 4 * d_in
    assert sum(p.numel() for p in method.trainable_parameters()) == expected_trainable
    # Nothing outside the experts and routers trains.
    assert all(
        n.rsplit(".", 1)[-1] in ("lora_A", "lora_B") or n.endswith("router.weight")
        for n, p in method.named_parameters()
        if p.requires_grad
    )


def test_gate_is_a_dense_softmax_summing_to_one_per_token(setup):
    _, layer = _layers(setup.method)[0]
    x = torch.randn(3, 7, layer.base_layer.in_features)
    gate = layer.gate(x)
    assert gate.shape == (3, 7, 4)
    assert torch.allclose(gate.sum(-1), torch.ones(3, 7), atol=1e-6)
    assert (gate > 0).all()  # dense: every expert contributes to every token (no top-k)
    assert not torch.allclose(gate[0, 0], gate[1, 3])  # token-level: tokens differ


def test_equals_the_frozen_layer_when_b_is_zero_and_follows_the_formula_otherwise(setup):
    method = setup.method
    batch = setup.batch()
    _, layer = _layers(method)[0]
    x = torch.randn(2, 5, layer.base_layer.in_features)
    assert torch.equal(layer(x), layer.base_layer(x))  # B initialised to zero
    # The whole LM: the MoELoRA model equals the frozen model bit for bit.
    with_experts = method.lm_logits(batch)
    layers = _layers(method)
    for name, wrapped in layers:
        parent, _, attribute = name.rpartition(".")
        setattr(method.backbone.language_model.get_submodule(parent), attribute, wrapped.base_layer)
    frozen = method.lm_logits(batch)
    assert torch.equal(with_experts, frozen)

    # With B ≠ 0: y = Wx + Σ_e softmax(Rx)_e · B_e A_e x · α/r, expert by expert.
    nn.init.normal_(layer.lora_B, std=0.5)
    gate = torch.softmax(x @ layer.router.weight.T, dim=-1)
    expected = layer.base_layer(x)
    for e in range(4):
        expert = x @ layer.lora_A[e].T @ layer.lora_B[e].T
        expected = expected + gate[..., e : e + 1] * expert * (16 / 8)
    assert torch.allclose(layer(x), expected, atol=1e-5)
    assert not torch.allclose(layer(x), layer.base_layer(x), atol=1e-3)


def test_one_shared_set_of_experts_is_trained_on_every_task(setup):
    method = setup.method
    names = sorted(n for n, p in method.named_parameters() if p.requires_grad)
    previous = {n: p.detach().clone() for n, p in method.named_parameters() if p.requires_grad}
    for stage in range(3):
        method.begin_task(stage, setup.tasks[stage])
        setup.train(stage, steps=3)
        method.end_task(stage, setup.tasks[stage], setup.tasks[stage].train)
        now = {n: p.detach().clone() for n, p in method.named_parameters() if p.requires_grad}
        assert sorted(now) == names  # the same tensors, none added per task
        for kind in ("lora_A", "lora_B", "router.weight"):  # every part learns on every task
            changed = [not torch.equal(now[n], previous[n]) for n in names if n.endswith(kind)]
            assert changed and all(changed), (stage, kind)
        previous = now
    assert set(method.method_state()) == set(names)


def test_rank_must_split_evenly_over_the_experts():
    with pytest.raises(
        ConfigError, match=r"method.args.r: 12 is not a multiple of method.args.experts \(8\)"
    ):
        method_class("moelora", {"r": 12, "experts": 8})
