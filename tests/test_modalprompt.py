"""ModalPrompt: exact freezing, a prefix of at most k·L tokens, selection without task ids,
the prototype loss, each ablation switch, analyses, `mcit predict`, and an HF LLaVA backbone."""

import dataclasses
import json
import random

import pytest
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from micro_method import learn_untrained, micro_stream, stub_task
from torch.nn import functional as F

from mcit.data.collate import IGNORE, Collator
from mcit.errors import BackboneError, ConfigError
from mcit.methods.base import build_method
from mcit.methods.modalprompt import ModalPrompt, insert_after_bos
from mcit.models.backbone import load_backbone
from mcit.train.trainer import RunLogger, Trainer


# ---------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def stream(micro_backbone_dirs, micro_benchmark, tmp_path_factory):
    return micro_stream(micro_benchmark, tmp_path_factory.mktemp("mp-config"), "modalprompt")


def _method(config, **args) -> ModalPrompt:
    return build_method("modalprompt", load_backbone(config.model.backbone), args)


def _mixed(tasks, per_task=2):
    return [s for t in tasks for s in t.test[:per_task]]


def _train_stage(method, task, stage, config, steps, lr, run_dir):
    train = dataclasses.replace(
        config.train, epochs=100.0, max_steps_per_task=steps, lr=lr, log_every=1
    )
    logger = RunLogger(run_dir, enabled=True)
    trainer = Trainer(Accelerator(cpu=True), train, logger, progress=False)
    trainer.train_stage(method, stage, task.train, Collator(method.backbone), seed=stage)
    logger.close()


def _clone(params) -> dict:
    return {k: v.detach().clone() for k, v in params}


# ---------------------------------------------------------------------------- splicing
def test_prompts_go_right_after_bos_whatever_the_padding_by_hand():
    bos, pad = 2, 0
    ids = torch.tensor([[pad, pad, bos, 7, 8], [bos, 7, 8, 9, 10], [pad, pad, pad, 7, 8]])
    mask = (ids != pad).long()
    labels = torch.where(mask.bool(), ids + 100, IGNORE)
    embeds = (100.0 * torch.arange(3)[:, None] + torch.arange(5)[None, :])[..., None].repeat(
        1, 1, 2
    )
    prefix = (-torch.arange(1.0, 7.0).reshape(3, 2, 1).repeat(1, 1, 2)).requires_grad_(True)
    new, new_mask, new_labels = insert_after_bos(embeds, mask, labels, ids, prefix, bos)
    # Row 0: pads, BOS, prompts, rest. Row 1: BOS first. Row 2 has lost its BOS (truncated):
    # the prompts go before its first real token.
    assert new[..., 0].tolist() == [
        [0, 1, 2, -1, -2, 3, 4],
        [100, -3, -4, 101, 102, 103, 104],
        [200, 201, 202, -5, -6, 203, 204],
    ]
    assert new_mask.tolist() == [[0, 0, 1, 1, 1, 1, 1], [1] * 7, [0, 0, 0, 1, 1, 1, 1]]
    assert new_labels.tolist() == [
        [IGNORE, IGNORE, 102, IGNORE, IGNORE, 107, 108],
        [102, IGNORE, IGNORE, 107, 108, 109, 110],
        [IGNORE, IGNORE, IGNORE, IGNORE, IGNORE, 107, 108],
    ]
    new.sum().backward()
    assert torch.equal(prefix.grad, torch.ones_like(prefix))


def test_prompts_sit_after_bos_before_the_text_and_image_slots_stay_from_input_ids(stream):
    config, tasks = stream
    method = _method(config)
    learn_untrained(method, 2)
    backbone = method.backbone
    image_row = backbone.input_embeddings.weight[backbone.image_token_id].detach()
    with torch.no_grad():  # a prompt equal to the <image> embedding must not become a slot
        method.prompts[0].copy_(image_row.expand_as(method.prompts[0]))
    samples = _mixed(tasks)
    batch = Collator(backbone)(samples, with_answer=False)
    selected = method.select(samples).tasks
    plain = backbone.embed(batch.input_ids, batch.pixel_values)
    new, mask, _ = method._spliced_inputs(batch, selected)
    n = 2 * method.args.prompt_length
    assert new.shape[1] == plain.shape[1] + n
    for b in range(len(samples)):
        start = int(batch.attention_mask[b].argmax())
        assert batch.input_ids[b, start] == backbone.tokenizer.bos_token_id
        # BOS, then the selected tasks' prompts (most similar last), then the original text.
        assert torch.equal(new[b, start], plain[b, start])
        expected = torch.cat([method.prompts[i] for i in selected[b].tolist()])
        assert torch.equal(new[b, start + 1 : start + 1 + n], expected)
        assert torch.equal(new[b, start + 1 + n :], plain[b, start + 1 :])
        assert mask[b, start:].eq(1).all() and mask[b, :start].eq(0).all()
    assert (selected == 0).any()  # the <image>-valued prompts were really used
    # The image features fill the original slots only: exactly num_image_tokens per sample.
    slots = batch.input_ids == backbone.image_token_id
    image_feats = plain[slots]
    matches = (new[..., None, :] == image_feats).all(-1).any(-1).sum()
    assert int(matches) == len(samples) * backbone.num_image_tokens
    assert len(method.generate(batch, max_new_tokens=2)) == len(samples)


def test_prompt_rows_start_as_copies_of_real_non_special_tokens(stream):
    config, _ = stream
    method = _method(config, prompt_length=40)
    learn_untrained(method, 3)
    table = method.backbone.input_embeddings.weight
    tokenizer = method.backbone.tokenizer
    special = set(tokenizer.all_special_ids) | {method.backbone.image_token_id}
    for prompt in method.prompts:
        assert prompt.shape == (40, method.backbone.hidden_size)
        for row in prompt:
            ids = (table == row.to(table.dtype)).all(dim=1).nonzero().flatten().tolist()
            assert ids and not set(ids) & special
    assert not torch.equal(method.prompts[0], method.prompts[1])


# ---------------------------------------------------------------------------- prefix size
@pytest.mark.parametrize("n_tasks", [1, 3, 12])
def test_prefix_has_at_most_k_times_L_tokens_whatever_the_number_of_tasks(stream, n_tasks):
    config, tasks = stream
    method = _method(config)
    learn_untrained(method, n_tasks)
    k, L = method.args.top_k, method.args.prompt_length
    samples = _mixed(tasks)
    batch = Collator(method.backbone)(samples, with_answer=False)
    selection = method.select(samples)
    assert selection.similarity.shape == (len(samples), n_tasks)
    assert selection.tasks.shape == (len(samples), min(k, n_tasks))
    new, _, _ = method._spliced_inputs(batch, selection.tasks)
    assert new.shape[1] - batch.input_ids.shape[1] == min(k, n_tasks) * L <= k * L
    # Without selection (the ablation) the prefix grows with every task.
    method.args = dataclasses.replace(method.args, selection=False)
    grown = method.select(samples).tasks
    assert grown.tolist() == [list(range(n_tasks))] * len(samples)


# ---------------------------------------------------------------------------- a trained stream
@pytest.fixture(scope="module")
def trained(stream, tmp_path_factory):
    """Three tasks trained in memory; snapshots after each stage and the untouched backbone."""
    config, tasks = stream
    method = _method(config)
    backbone_before = _clone(method.backbone.model.state_dict().items())
    rows_before = method.backbone.input_embeddings.num_embeddings
    after_stage, at_begin, trainable = [], [], []
    for s, task in enumerate(tasks):
        set_seed(s)
        method.begin_task(s, task)
        at_begin.append(_clone(method.named_parameters()))
        own = [method.prompts[s], *method.projections[s].parameters()]
        trainable.append(({id(p) for p in method.trainable_parameters()}, {id(p) for p in own}))
        _train_stage(method, task, s, config, 3, 1e-2, tmp_path_factory.mktemp("logs"))
        method.end_task(s, task, task.train)
        after_stage.append(_clone(method.named_parameters()))
    return method, backbone_before, rows_before, at_begin, after_stage, trainable


def test_old_prompts_and_projections_are_bit_identical_after_later_tasks(trained):
    method, _, _, at_begin, after_stage, trainable = trained
    final = dict(method.named_parameters())
    for t in range(3):
        own = [k for k in final if k.startswith((f"prompts.{t}", f"projections.{t}."))]
        assert own
        # Task t trained during its own stage...
        assert any(not torch.equal(at_begin[t][k], after_stage[t][k]) for k in own)
        assert not torch.equal(at_begin[t][f"prompts.{t}"], after_stage[t][f"prompts.{t}"])
        # ...and never changed again.
        for k in own:
            assert torch.equal(after_stage[t][k], final[k]), k
            assert not final[k].requires_grad
        # Only P_t and g_t trained during stage t.
        trained_ids, own_ids = trainable[t]
        assert trained_ids == own_ids


def test_vocabulary_lm_head_and_backbone_are_untouched(trained, stream):
    method, backbone_before, rows_before, *_ = trained
    after = method.backbone.model.state_dict()
    assert set(after) == set(backbone_before)
    assert any("embed_tokens" in k for k in after) and any("lm_head" in k for k in after)
    for key, value in backbone_before.items():
        assert torch.equal(after[key], value), key
    assert method.backbone.input_embeddings.num_embeddings == rows_before
    # What the method saves: only its prompts and projections (no backbone, no CLIP).
    state = method.method_state()
    assert state and all(k.startswith(("prompts.", "projections.")) for k in state)
    assert not any(p.requires_grad for p in method.backbone.parameters())


def test_selection_never_reads_a_task_id(trained, stream):
    # Answers independent of batch and task field: the contract tests, for every method. Here,
    # the selection itself.
    method, *_ = trained
    _, tasks = stream
    mixed = [s for t in tasks for s in t.test]
    random.Random(0).shuffle(mixed)
    assert len({s.task for s in mixed[:5]}) > 1  # the first batch of 5 mixes tasks
    mixed = [dataclasses.replace(s, task="?") for s in mixed]  # and no task field to read
    # The selected tasks of a sample do not depend on its batch or its task field either.
    alone = torch.cat([method.select([s]).tasks for s in mixed])
    assert torch.equal(method.select(mixed).tasks, alone)


# ---------------------------------------------------------------------------- the loss
def test_prototype_loss_decreases_during_a_task(stream, tmp_path):
    config, tasks = stream
    method = _method(config)
    set_seed(0)
    method.begin_task(0, tasks[0])
    batch = Collator(method.backbone)(tasks[0].train[:8])
    before = method.training_loss(batch).parts
    _train_stage(method, tasks[0], 0, config, 12, 1e-2, tmp_path)
    after = method.training_loss(batch).parts
    assert after["proto"] < before["proto"] - 0.05
    assert after["proto_image"] < before["proto_image"]
    assert after["proto_text"] < before["proto_text"]
    logged = [json.loads(x) for x in (tmp_path / "logs" / "train.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == list(range(12))
    assert logged[-1]["proto"] < logged[0]["proto"]


def test_loss_is_lm_plus_both_prototype_terms_by_hand(stream):
    config, tasks = stream
    method = _method(config)
    learn_untrained(method, 2)
    method.begin_task(2, stub_task("current"))
    samples = tasks[1].train[:4]
    batch = Collator(method.backbone)(samples)
    out = method.training_loss(batch)
    feats = method.guidance.features(samples, "cpu")
    p_t = method.projections[2](method.prompts[2]).mean(0)  # Eq. 9
    proto_image = 1 - F.cosine_similarity(feats.image, p_t[None], dim=-1).mean()  # Eq. 12
    proto_text = 1 - F.cosine_similarity(feats.text, p_t[None], dim=-1).mean()  # Eq. 13
    assert out.parts["proto_image"] == pytest.approx(proto_image.item(), abs=1e-6)
    assert out.parts["proto_text"] == pytest.approx(proto_text.item(), abs=1e-6)
    expected = out.parts["lm"] + proto_image.item() + proto_text.item()  # Eq. 11
    assert out.loss.item() == pytest.approx(expected, abs=1e-5)
    # The gradient reaches P_t and g_t only.
    out.loss.backward()
    assert method.prompts[2].grad is not None and method.prompts[2].grad.abs().sum() > 0
    assert all(p.grad is not None for p in method.projections[2].parameters())
    assert all(method.prompts[i].grad is None for i in range(2))


# ---------------------------------------------------------------------------- ablations
@pytest.fixture(scope="module")
def three_tasks(stream):
    """A default method with three (untrained) tasks, and its saved state to clone."""
    config, tasks = stream
    method = _method(config)
    learn_untrained(method, 3)
    return method, method.method_state()


def _variant(stream, state, **args) -> ModalPrompt:
    config, _ = stream
    method = _method(config, **args)
    learn_untrained(method, 3)
    method.load_method_state(state)
    return method


def test_guidance_lambda_weighs_image_and_text_cosines_by_hand(stream, three_tasks):
    _, tasks = stream
    base, state = three_tasks
    samples = _mixed(tasks)
    feats = base.guidance.features(samples, "cpu")
    with torch.no_grad():
        protos = base.prototypes()
    cos_img = F.cosine_similarity(feats.image[:, None], protos[None], dim=-1)
    cos_txt = F.cosine_similarity(feats.text[:, None], protos[None], dim=-1)
    for lam in (0.0, 0.25, 0.5, 1.0):
        method = _variant(stream, state, guidance_lambda=lam)
        s = method.select(samples).similarity  # Eq. 5-6
        torch.testing.assert_close(s, lam * cos_img + (1 - lam) * cos_txt, rtol=0, atol=1e-5)
    # Image-only guidance reads no text feature, text-only no image feature.
    for lam, unused in ((1.0, "text"), (0.0, "image")):
        method = _variant(stream, state, guidance_lambda=lam)
        calls = []

        def spy(s, d, calls=calls, real=method.guidance.features, **kw):
            calls.append(kw)
            return real(s, d, **kw)

        method.guidance.features = spy
        method.select(samples)
        assert calls == [{"image": lam > 0, "text": lam < 1}] and not calls[0][unused]


def _current_task_prompts(method, samples):
    method.begin_task(3, stub_task("current"))
    tasks, _ = method.training_prompts(samples)
    return tasks


def test_fusion_changes_the_training_prefix_and_nothing_else(stream, three_tasks):
    config, tasks = stream
    _, state = three_tasks
    samples = _mixed(tasks)
    fused, alone = _variant(stream, state), _variant(stream, state, fusion=False)
    # Inference is the same with or without fusion (same learned state).
    batch = Collator(fused.backbone)(samples, with_answer=False)
    assert torch.equal(fused.select(samples).tasks, alone.select(samples).tasks)
    assert fused.generate(batch, max_new_tokens=4) == alone.generate(batch, max_new_tokens=4)
    # Training task 4 (index 3): fusion = top-(k−1) old tasks by s (least similar first), then P_t.
    with torch.no_grad():
        s = fused.select(samples).similarity  # over the 3 old tasks
    top_old = s.argsort(dim=1, descending=True)[:, :2].flip(1)
    current = torch.full((len(samples), 1), 3)
    assert torch.equal(_current_task_prompts(fused, samples), torch.cat([top_old, current], 1))
    assert torch.equal(_current_task_prompts(alone, samples), current)
    assert [k for k in fused.method_state()] == [k for k in alone.method_state()]


def test_selection_off_concatenates_every_prompt_and_changes_nothing_else(stream, three_tasks):
    _, tasks = stream
    _, state = three_tasks
    samples = _mixed(tasks)
    selecting, all_prompts = _variant(stream, state), _variant(stream, state, selection=False)
    assert selecting.select(samples).tasks.shape[1] == 3  # k = 3 of 3
    assert all_prompts.select(samples).tasks.tolist() == [[0, 1, 2]] * len(samples)
    torch.testing.assert_close(
        selecting.select(samples).similarity, all_prompts.select(samples).similarity
    )
    # Training with fusion: every old prompt, in stream order, then P_t (Progressive Prompts).
    assert _current_task_prompts(all_prompts, samples).tolist() == [[0, 1, 2, 3]] * len(samples)
    # Without fusion the selection switch does not touch training at all: same loss.
    a = _variant(stream, state, fusion=False)
    b = _variant(stream, state, fusion=False, selection=False)
    a.begin_task(3, stub_task("current"))
    b.begin_task(3, stub_task("current"))
    b.load_method_state(a.method_state())
    batch = Collator(a.backbone)(samples)
    assert a.training_loss(batch).loss.item() == b.training_loss(batch).loss.item()


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_top_k_sets_how_many_prompt_sets_are_selected(stream, three_tasks, k):
    _, tasks = stream
    _, state = three_tasks
    samples = _mixed(tasks)
    method = _variant(stream, state, top_k=k)
    selection = method.select(samples)
    assert selection.tasks.shape == (len(samples), min(k, 3))
    ranked = selection.similarity.argsort(dim=1, descending=True)[:, : min(k, 3)]
    assert torch.equal(selection.tasks, ranked.flip(1))  # most similar last, nearest the text
    assert _current_task_prompts(method, samples).shape == (len(samples), min(k - 1, 3) + 1)


@pytest.mark.parametrize("length", [5, 10, 20])
def test_prompt_length_sets_the_prompt_rows(stream, length):
    config, tasks = stream
    method = _method(config, prompt_length=length)
    learn_untrained(method, 2)
    default = _method(config)
    learn_untrained(default, 2)
    shapes = {k: v.shape for k, v in method.method_state().items()}
    default_shapes = {k: v.shape for k, v in default.method_state().items()}
    assert shapes.pop("prompts.0") == shapes.pop("prompts.1") == (length, 48)
    assert {k: v for k, v in default_shapes.items() if not k.startswith("prompts.")} == shapes
    samples = _mixed(tasks, 1)
    batch = Collator(method.backbone)(samples, with_answer=False)
    new, _, _ = method._spliced_inputs(batch, method.select(samples).tasks)
    assert new.shape[1] - batch.input_ids.shape[1] == 2 * length


def test_prototype_loss_weights_switch_their_terms(stream, three_tasks):
    _, tasks = stream
    _, state = three_tasks
    samples = tasks[0].train[:4]
    outs = {}
    for name, args in {
        "both": {},
        "image": {"prototype_loss_weight_text": 0.0},
        "text": {"prototype_loss_weight_image": 0.0},
    }.items():
        method = _variant(stream, state, **args)
        method.begin_task(3, stub_task("current"))
        if name == "both":
            current = method.method_state()
        method.load_method_state(current)
        outs[name] = method.training_loss(Collator(method.backbone)(samples))
    both, image, text = outs["both"], outs["image"], outs["text"]
    assert set(image.parts) == {"lm", "proto_image", "proto"}
    assert set(text.parts) == {"lm", "proto_text", "proto"}
    assert image.parts["lm"] == text.parts["lm"] == both.parts["lm"]
    assert image.loss.item() == pytest.approx(both.parts["lm"] + both.parts["proto_image"])
    assert text.loss.item() == pytest.approx(both.parts["lm"] + both.parts["proto_text"])


def test_bad_arguments_are_clear_config_errors(stream):
    config, _ = stream
    with pytest.raises(ConfigError, match="method.args.top_k"):
        _method(config, top_k=0)
    with pytest.raises(ConfigError, match=r"method.args.guidance_lambda: 1.5 must be at most 1"):
        _method(config, guidance_lambda=1.5)
    with pytest.raises(ConfigError, match="unknown key"):
        _method(config, lam=0.5)


# ---------------------------------------------------------------------------- every-layer prompts
def _deep_method(stream, n_tasks=2) -> ModalPrompt:
    config, _ = stream
    method = _method(config, prompt_depth="every-layer")
    learn_untrained(method, n_tasks)
    with torch.no_grad():  # far from their init, so that each layer's prompt shows in the output
        gen = torch.Generator().manual_seed(0)
        for rows in method.layer_prompts:
            rows.copy_(3 * torch.randn(rows.shape, generator=gen))
    return method


def test_every_layer_prompts_replace_the_prefix_at_the_input_of_each_decoder_layer(stream):
    _, tasks = stream
    method = _deep_method(stream)
    backbone, length = method.backbone, method.args.prompt_length
    layers = backbone.decoder_layers
    assert [tuple(p.shape) for p in method.layer_prompts] == [
        (backbone.num_layers - 1, length, backbone.hidden_size)
    ] * 2
    samples = _mixed(tasks)
    batch = Collator(backbone)(samples, with_answer=False)
    selected = method.select(samples).tasks
    seen: dict[int, torch.Tensor] = {}

    def capture(i):
        def hook(module, args, kwargs):
            seen[i] = (args[0] if args else kwargs["hidden_states"]).detach().clone()

        return hook

    with method.prompted(batch, selected) as (embeds, mask, _):
        handles = [  # registered after the prompts' hooks, so they see what the layer reads
            layer.register_forward_pre_hook(capture(i), with_kwargs=True)
            for i, layer in enumerate(layers)
        ]
        backbone.logits(embeds, mask)
        for handle in handles:
            handle.remove()
    assert all(not layer._forward_pre_hooks for layer in layers)  # nothing left behind
    n = selected.shape[1] * length
    for b in range(len(samples)):
        start = int(batch.attention_mask[b].argmax()) + 1  # after BOS
        assert torch.equal(seen[0][b, start : start + n], embeds[b, start : start + n])
        for i in range(1, len(layers)):
            expected = torch.cat([method.layer_prompts[t][i - 1] for t in selected[b].tolist()])
            assert torch.equal(seen[i][b, start : start + n], expected), (b, i)
            # The text after the prefix is the layer below's output, not a prompt.
            assert not torch.equal(seen[i][b, start + n], seen[0][b, start + n])


def test_every_layer_prompts_generate_what_the_teacher_forced_logits_predict(stream):
    """Generation replaces the prefix in its prefill only and reads it from the KV cache after:
    each greedy token is the argmax of a full forward over the prompt and the tokens before it."""
    from mcit.models.prompting import PrefixSlots, insertion_points, prompts_at_every_layer

    _, tasks = stream
    method = _deep_method(stream)
    backbone = method.backbone
    samples = _mixed(tasks)
    batch = Collator(backbone)(samples, with_answer=False)
    selected = method.select(samples).tasks
    steps = 5
    with torch.no_grad(), method.prompted(batch, selected) as (embeds, mask, _):
        tokens = backbone.model.generate(
            inputs_embeds=embeds,
            attention_mask=mask,
            max_new_tokens=steps,
            min_new_tokens=steps,
            do_sample=False,
            pad_token_id=backbone.tokenizer.pad_token_id,
        )
        deep_last = backbone.logits(embeds, mask)[:, -1]
    assert tokens.shape == (len(samples), steps)
    width = embeds.shape[1]
    full = torch.cat([embeds, backbone.input_embeddings(tokens)], dim=1)
    full_mask = torch.cat([mask, torch.ones_like(tokens)], dim=1)
    n = selected.shape[1] * method.args.prompt_length
    at = insertion_points(batch.attention_mask, batch.input_ids, backbone.tokenizer.bos_token_id)
    rows = torch.stack(list(method.layer_prompts))[selected]  # [B, m, N − 1, L, d]
    rows = rows.permute(2, 0, 1, 3, 4).reshape(rows.shape[2], len(samples), n, -1)
    slots = PrefixSlots(at, n, full.shape[1])
    with (
        torch.no_grad(),
        prompts_at_every_layer(backbone.decoder_layers, slots, lambda i: rows[i - 1]),
    ):
        forced = backbone.logits(full, full_mask)[:, width - 1 : width - 1 + steps].argmax(-1)
    assert torch.equal(forced, tokens)
    assert torch.equal(deep_last.argmax(-1), tokens[:, 0])
    # The layer prompts count: with the input prompts alone the next-token logits differ.
    with torch.no_grad():
        embeds, mask, _ = method._spliced_inputs(batch, selected)
        input_only = backbone.logits(embeds, mask)[:, -1]
    assert (input_only - deep_last).abs().max() > 1e-3
    # Shapes that would lose the layer prompts are refused, not run without them.
    with (
        torch.no_grad(),
        method.prompted(batch, selected) as (embeds, mask, _),
        pytest.raises(BackboneError, match="beams or several sequences"),
    ):
        backbone.generate(embeds, mask, max_new_tokens=2, num_beams=2)
    assert all(not layer._forward_pre_hooks for layer in backbone.decoder_layers)  # removed


def test_every_layer_prompts_train_for_the_current_task_only_and_round_trip(stream, tmp_path):
    config, tasks = stream
    method = _method(config, prompt_depth="every-layer")
    for s, task in enumerate(tasks[:2]):
        set_seed(s)
        method.begin_task(s, task)
        if s == 1:
            old = method.layer_prompts[0].detach().clone()
            ids = {id(p) for p in method.trainable_parameters()}
            assert id(method.layer_prompts[1]) in ids and id(method.layer_prompts[0]) not in ids
        before = method.layer_prompts[s].detach().clone()
        _train_stage(method, task, s, config, 3, 1e-2, tmp_path / f"logs{s}")
        method.end_task(s, task, task.train)
        assert not torch.equal(before, method.layer_prompts[s])  # it trained
    assert torch.equal(old, method.layer_prompts[0])  # and never again
    state = method.method_state()
    assert {"layer_prompts.0", "layer_prompts.1"} <= set(state)
    again = _method(config, prompt_depth="every-layer")
    learn_untrained(again, 2)
    again.load_method_state(state)
    for mine, theirs in zip(method.layer_prompts, again.layer_prompts, strict=True):
        assert torch.equal(mine, theirs) and not theirs.requires_grad
    samples = _mixed(tasks)
    batch = Collator(method.backbone)(samples, with_answer=False)
    assert method.generate(batch) == again.generate(batch)
    with pytest.raises(ConfigError, match="method.args.prompt_depth"):
        _method(config, prompt_depth="deep")


def test_every_layer_prompts_on_a_bf16_model_train_float32_and_input_prompts_hook_nothing(stream):
    config, tasks = stream
    bf16 = dataclasses.replace(config.model.backbone, dtype="bfloat16")
    method = build_method("modalprompt", load_backbone(bf16), {"prompt_depth": "every-layer"})
    learn_untrained(method, 1)  # task 1's prompts, frozen
    set_seed(1)
    method.begin_task(1, stub_task("task1"))  # task 2's, training
    samples = [s for t in tasks[:2] for s in t.train[:2]]
    batch = Collator(method.backbone)(method.batch_samples(samples), with_answer=True)
    method.training_loss(batch).loss.backward()
    current, old = method.layer_prompts[1], method.layer_prompts[0]
    assert current.dtype == current.grad.dtype == torch.float32
    assert all(current.grad[i].abs().sum() > 0 for i in range(current.shape[0]))  # every layer
    assert old.grad is None
    # The paper's input prompts touch no decoder layer.
    plain = _method(config)
    learn_untrained(plain, 1)
    batch = Collator(plain.backbone)(_mixed(tasks), with_answer=False)
    with plain.prompted(batch, plain.select(_mixed(tasks)).tasks):
        assert all(not layer._forward_pre_hooks for layer in plain.backbone.decoder_layers)


def test_every_layer_prompts_refuse_gradient_checkpointing(stream):
    config, _ = stream
    backbone_config = dataclasses.replace(config.model.backbone, gradient_checkpointing=True)
    backbone = load_backbone(backbone_config)
    with pytest.raises(ConfigError, match="prompt_depth: every-layer cannot train with"):
        build_method("modalprompt", backbone, {"prompt_depth": "every-layer"})
    assert build_method("modalprompt", backbone, {}).args.prompt_depth == "input"
