"""Progressive Prompts: a t·L-token prefix after t tasks (oldest first), old prompts
bit-identical after later tasks, only the newest prompt trains, the backbone never, no task id."""

import dataclasses

import pytest
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from conftest import micro_overrides
from micro_method import learn_untrained, micro_stream, stub_task

from mcit.config import load_config
from mcit.data.collate import Collator
from mcit.errors import ConfigError
from mcit.methods.base import build_method
from mcit.methods.progressive_prompts import ProgressivePrompts
from mcit.models.backbone import load_backbone
from mcit.models.prompting import insert_after_bos
from mcit.runner import run
from mcit.train.checkpoint import load_stage
from mcit.train.trainer import RunLogger, Trainer

D = 48  # micro LM width


@pytest.fixture(scope="module")
def stream(micro_backbone_dirs, micro_benchmark, tmp_path_factory):
    return micro_stream(
        micro_benchmark, tmp_path_factory.mktemp("pp-config"), "progressive-prompts"
    )


def _method(config, **args) -> ProgressivePrompts:
    return build_method("progressive-prompts", load_backbone(config.model.backbone), args)


def _clone(params) -> dict:
    return {k: v.detach().clone() for k, v in params}


@pytest.mark.parametrize("n_tasks", [1, 3, 12])
def test_prefix_is_every_learned_prompt_oldest_first_t_times_L_tokens(stream, n_tasks):
    config, tasks = stream
    method = _method(config)
    learn_untrained(method, n_tasks)
    samples = [s for t in tasks for s in t.test[:2]]
    batch = Collator(method.backbone)(samples, with_answer=False)
    plain = method.backbone.embed(batch.input_ids, batch.pixel_values)
    new, mask, _ = method.prompted_inputs(batch)
    n = n_tasks * 10
    assert new.shape[1] == plain.shape[1] + n
    expected = torch.cat([method.prompts[i] for i in range(n_tasks)])  # P_1 … P_t
    for b in range(len(samples)):
        start = int(batch.attention_mask[b].argmax())
        assert batch.input_ids[b, start] == method.backbone.tokenizer.bos_token_id
        assert torch.equal(new[b, start], plain[b, start])  # BOS
        assert torch.equal(new[b, start + 1 : start + 1 + n], expected)  # newest nearest text
        assert torch.equal(new[b, start + 1 + n :], plain[b, start + 1 :])
        assert mask[b, start:].eq(1).all() and mask[b, :start].eq(0).all()


def test_prompt_rows_start_as_copies_of_real_tokens_and_length_is_a_key(stream):
    config, _ = stream
    method = _method(config, prompt_length=7)
    learn_untrained(method, 2)
    table = method.backbone.input_embeddings.weight
    special = set(method.backbone.tokenizer.all_special_ids) | {method.backbone.image_token_id}
    for prompt in method.prompts:
        assert prompt.shape == (7, D)
        for row in prompt:
            ids = (table == row).all(dim=1).nonzero().flatten().tolist()
            assert ids and not set(ids) & special
    assert not torch.equal(method.prompts[0], method.prompts[1])
    with pytest.raises(ValueError, match=r"begin_task\(5\) after 2 task\(s\)"):
        method.begin_task(5, stub_task("skipped"))
    with pytest.raises(ConfigError, match="method.args.prompt_length: 0 must be at least 1"):
        _method(config, prompt_length=0)


def test_loss_is_the_lm_loss_behind_every_prompt_and_reaches_only_the_newest(stream):
    config, tasks = stream
    method = _method(config)
    learn_untrained(method, 2)
    method.begin_task(2, stub_task("current"))
    batch = Collator(method.backbone)(tasks[1].train[:4])
    out = method.training_loss(batch)
    backbone = method.backbone
    prefix = torch.cat([method.prompts[i] for i in range(3)])[None].expand(4, -1, -1)
    embeds, mask, labels = insert_after_bos(
        backbone.embed(batch.input_ids, batch.pixel_values),
        batch.attention_mask,
        batch.labels,
        batch.input_ids,
        prefix,
        backbone.tokenizer.bos_token_id,
    )
    lm = backbone.lm_loss(backbone.logits(embeds, mask), labels)
    assert out.loss.item() == pytest.approx(lm.item(), abs=1e-6) and out.parts == {"lm": lm.item()}
    out.loss.backward()
    assert method.prompts[2].grad is not None and method.prompts[2].grad.abs().sum() > 0
    assert method.prompts[0].grad is None and method.prompts[1].grad is None
    assert all(p.grad is None for p in backbone.parameters())
    assert [id(p) for p in method.trainable_parameters()] == [id(method.prompts[2])]


# ---------------------------------------------------------------------------- a trained stream
@pytest.fixture(scope="module")
def trained(stream, tmp_path_factory):
    """Three tasks trained in memory (3 steps each); snapshots after each stage."""
    config, tasks = stream
    method = _method(config)
    backbone_before = _clone(method.backbone.model.state_dict().items())
    at_begin, after_stage, trainable = [], [], []
    train = dataclasses.replace(config.train, epochs=100.0, max_steps_per_task=3, lr=1e-2)
    for s, task in enumerate(tasks):
        set_seed(s)
        method.begin_task(s, task)
        at_begin.append(_clone(method.named_parameters()))
        trainable.append([id(p) for p in method.trainable_parameters()])
        logger = RunLogger(tmp_path_factory.mktemp("logs"), enabled=False)
        trainer = Trainer(Accelerator(cpu=True), train, logger, progress=False)
        trainer.train_stage(method, s, task.train, Collator(method.backbone), seed=s)
        method.end_task(s, task, task.train)
        after_stage.append(_clone(method.named_parameters()))
    return method, backbone_before, at_begin, after_stage, trainable


def test_old_prompts_are_bit_identical_after_later_tasks(trained):
    method, _, at_begin, after_stage, trainable = trained
    final = dict(method.named_parameters())
    for t in range(3):
        key = f"prompts.{t}"
        assert not torch.equal(at_begin[t][key], after_stage[t][key])  # trained in its stage
        for later in after_stage[t:]:
            assert torch.equal(after_stage[t][key], later[key])  # and never again
        assert not final[key].requires_grad
        assert trainable[t] == [id(method.prompts[t])]  # only the newest prompt trained


def test_backbone_is_untouched_and_only_prompts_are_saved(trained):
    method, backbone_before, *_ = trained
    for key, value in method.backbone.model.state_dict().items():
        assert torch.equal(value, backbone_before[key]), key
    assert set(method.method_state()) == {"prompts.0", "prompts.1", "prompts.2"}
    assert not any(p.requires_grad for p in method.backbone.parameters())


def test_a_run_saves_one_more_frozen_prompt_per_stage(
    micro_backbone_dirs, micro_benchmark, tmp_path
):
    overrides = micro_overrides(micro_benchmark, tmp_path, "progressive-prompts")
    config = load_config(None, [*overrides, "train.lr=0.01"])
    results = run(config, progress=False)
    assert results.complete and len(results.matrix) == 3
    assert [s.trainable_parameters for s in results.stages] == [10 * D] * 3
    assert [s.total_parameters - results.stages[0].total_parameters
            for s in results.stages] == [0, 10 * D, 20 * D]  # fmt: skip
    stages = [load_stage(tmp_path / config.run_name / f"stage_{s}")[0] for s in (1, 2, 3)]
    for s, state in enumerate(stages):
        assert set(state) == {f"prompts.{t}" for t in range(s + 1)}
        for t in range(s):
            assert torch.equal(state[f"prompts.{t}"], stages[t][f"prompts.{t}"])
