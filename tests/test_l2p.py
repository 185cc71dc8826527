"""L2P: pool and key shapes, top-N selection by cosine to the CLIP image feature, the key loss
by hand, gradients on the selected prompts and keys only, no task id, Eq. 4's diversity, a
micro run (analyses, `mcit predict`) and DDP."""

import dataclasses
import itertools
import json
import random

import pytest
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from conftest import micro_overrides
from micro_method import micro_stream, stub_task
from torch.nn import functional as F

from mcit.cli import main
from mcit.config import load_config
from mcit.data.collate import Collator
from mcit.errors import ConfigError
from mcit.methods.base import build_method
from mcit.methods.l2p import L2P
from mcit.models.guidance import GuidanceEncoder
from mcit.models.prompting import insert_after_bos, prompted_inputs
from mcit.runner import load_stream, run
from mcit.train.checkpoint import load_stage
from mcit.train.trainer import RunLogger, Trainer

D, C = 48, 32  # micro LM width, micro CLIP feature width


@pytest.fixture(scope="module")
def stream(micro_backbone_dirs, micro_benchmark, tmp_path_factory):
    return micro_stream(micro_benchmark, tmp_path_factory.mktemp("l2p-config"), "l2p")


def _method(config, **args) -> L2P:
    from mcit.models.backbone import load_backbone

    set_seed(0)
    return build_method("l2p", load_backbone(config.model.backbone), args)


def _mixed(tasks, per_task=2):
    return [s for t in tasks for s in t.test[:per_task]]


def _train_stage(method, task, stage, config, steps, run_dir):
    train = dataclasses.replace(config.train, epochs=100.0, max_steps_per_task=steps, lr=1e-2)
    logger = RunLogger(run_dir, enabled=False)
    trainer = Trainer(Accelerator(cpu=True), train, logger, progress=False)
    return trainer.train_stage(method, stage, task.train, Collator(method.backbone), seed=stage)


def _clone(params) -> dict:
    return {k: v.detach().clone() for k, v in params}


# ---------------------------------------------------------------------------- the pool
def test_pool_and_keys_have_their_shapes_and_start_as_real_tokens_and_uniform_keys(stream):
    config, _ = stream
    method = _method(config)
    assert method.prompts.shape == (10, 5, D) and method.keys.shape == (10, C)
    assert method.guidance.dim == C
    # One shared pool and its keys: all that trains, on every task; the backbone is frozen.
    assert [id(p) for p in method.trainable_parameters()] == [id(method.prompts), id(method.keys)]
    assert set(method.method_state()) == {"prompts", "keys", "usage"}
    table = method.backbone.input_embeddings.weight
    special = set(method.backbone.tokenizer.all_special_ids) | {method.backbone.image_token_id}
    for row in method.prompts.detach().reshape(-1, D):
        ids = (table == row).all(dim=1).nonzero().flatten().tolist()
        assert ids and not set(ids) & special
    assert method.keys.min() >= -1 and method.keys.max() <= 1 and method.keys.std() > 0.3
    # begin_task creates nothing: the pool is the same tensor on every task.
    for t in range(3):
        method.begin_task(t, stub_task(f"t{t}"))
    own = {k for k, _ in method.named_parameters() if not k.startswith("backbone.")}
    assert own == {"prompts", "keys"}

    small = _method(config, pool_size=4, prompt_length=2, top_n=4)
    assert small.prompts.shape == (4, 2, D) and small.keys.shape == (4, C)


def test_selection_is_the_top_n_keys_by_cosine_most_similar_first_by_hand(stream):
    config, _ = stream
    method = _method(config, pool_size=6, top_n=3)
    eye = torch.eye(C)
    with torch.no_grad():  # key m points along axis m, with different lengths (cosine ignores it)
        method.keys.copy_(eye[:6] * torch.arange(1.0, 7.0)[:, None])
    q = torch.stack(
        [
            3 * eye[2] + 2 * eye[5] + 1 * eye[0],  # cosines ∝ 3, 2, 1 to keys 2, 5, 0
            -eye[1] + 0.5 * eye[3] + 4 * eye[4] + 2 * eye[1 + 30],  # 4 > 0.5 > 0 (others) > −1
        ]
    )
    cosine = method.key_cosine(q)
    norms = q.norm(dim=1, keepdim=True)
    expected = torch.zeros(2, 6)
    expected[0, [2, 5, 0]] = torch.tensor([3.0, 2.0, 1.0])
    expected[1, [1, 3, 4]] = torch.tensor([-1.0, 0.5, 4.0])
    torch.testing.assert_close(cosine, expected / norms, rtol=0, atol=1e-6)
    selected = method.select(cosine)
    assert selected[0].tolist() == [2, 5, 0]
    assert selected[1, :2].tolist() == [4, 3] and selected[1, 2] in (0, 2, 5)  # then a 0-cosine


def test_query_is_the_clip_image_feature_and_selection_uses_it(stream):
    config, tasks = stream
    method = _method(config)
    samples = _mixed(tasks)
    calls = []
    real = method.guidance.features

    def spy(s, d, **kw):
        calls.append(kw)
        return real(s, d, **kw)

    method.guidance.features = spy
    q, has_image = method.query(samples)
    assert calls == [{"image": True, "text": False}] and has_image.all()
    image = real(samples, "cpu", image=True, text=False).image
    assert torch.equal(q, image)
    selected, cosine = method.selection(samples)
    by_hand = F.cosine_similarity(image[:, None], method.keys.detach()[None], dim=-1)  # [B, M]
    torch.testing.assert_close(cosine, by_hand, rtol=0, atol=1e-6)
    for b in range(len(samples)):
        ranked = sorted(range(10), key=lambda m, b=b: -float(by_hand[b, m]))
        assert selected[b].tolist() == ranked[:3]
    assert len({tuple(r) for r in selected.tolist()}) > 1  # samples really select differently


def test_a_sample_without_an_image_queries_with_its_projected_instruction(
    stream, micro_backbone_dirs
):
    config, tasks = stream
    method = _method(config)
    with_image = tasks[0].test[0]
    without = dataclasses.replace(tasks[1].test[0], media={})
    q, has_image = method.query([with_image, without])
    assert has_image.tolist() == [True, False]
    feats = method.guidance.features([with_image, without], "cpu")
    assert torch.equal(q[0], feats.image[0]) and torch.equal(q[1], feats.text[1])
    # The joint image-text space: CLIP's text projection of the pooled instruction feature.
    _, clip_dir = micro_backbone_dirs
    pooled = GuidanceEncoder(clip_dir, text_projection=False).features([without], "cpu").text
    projected = method.guidance.model.text_projection(pooled)
    torch.testing.assert_close(q[1:], projected, rtol=0, atol=1e-6)
    assert not torch.allclose(projected, pooled, atol=1e-3)


# ---------------------------------------------------------------------------- the loss
def test_loss_is_lm_plus_the_key_pull_term_by_hand(stream):
    config, tasks = stream
    method = _method(config, key_loss_weight=0.5)
    method.begin_task(0, tasks[0])
    samples = tasks[0].train[:4]
    batch = Collator(method.backbone)(samples)
    out = method.training_loss(batch)
    image = method.guidance.features(samples, "cpu", text=False).image
    keys = method.keys.detach()
    cos = F.cosine_similarity(image[:, None], keys[None], dim=-1)  # [B, M]
    chosen = cos.topk(3, dim=1).indices
    key = 1 - sum(float(cos[b, m]) for b in range(4) for m in chosen[b]) / 12  # Eq. 5, mean B·N
    assert out.parts["key"] == pytest.approx(key, abs=1e-6)
    # The LM part: the selected prompts spliced after BOS, most similar first.
    backbone = method.backbone
    prefix = torch.stack([torch.cat([method.prompts[m] for m in chosen[b]]) for b in range(4)])
    embeds, mask, labels = insert_after_bos(
        backbone.embed(batch.input_ids, batch.pixel_values),
        batch.attention_mask,
        batch.labels,
        batch.input_ids,
        prefix,
        backbone.tokenizer.bos_token_id,
    )
    assert embeds.shape[1] == batch.input_ids.shape[1] + 3 * 5
    lm = backbone.lm_loss(backbone.logits(embeds, mask), labels)
    assert out.parts["lm"] == pytest.approx(lm.item(), abs=1e-6)
    assert out.loss.item() == pytest.approx(lm.item() + 0.5 * key, abs=1e-5)


def test_gradients_reach_only_the_selected_prompts_and_keys(stream):
    config, tasks = stream
    method = _method(config)
    method.begin_task(0, tasks[0])
    samples = [tasks[0].train[0], tasks[2].train[0]]
    batch = Collator(method.backbone)(samples)
    out = method.training_loss(batch)
    selected, _ = method.selection(samples)
    used = set(selected.flatten().tolist())
    assert 3 <= len(used) < 10
    out.loss.backward()
    for m in range(10):
        prompt_grad, key_grad = method.prompts.grad[m], method.keys.grad[m]
        if m in used:
            assert prompt_grad.abs().sum() > 0 and key_grad.abs().sum() > 0, m
        else:  # exactly zero, not merely small
            assert torch.equal(prompt_grad, torch.zeros_like(prompt_grad)), m
            assert torch.equal(key_grad, torch.zeros_like(key_grad)), m
    assert all(p.grad is None for p in method.backbone.parameters())
    # The key term alone moves the keys only; the LM term alone moves the prompts only.
    method.zero_grad()
    q, _ = method.query(samples)
    cosine = method.key_cosine(q)
    (1 - cosine.gather(1, method.select(cosine)).mean()).backward()
    assert method.prompts.grad is None and method.keys.grad.abs().sum() > 0


# ---------------------------------------------------------------------------- a trained stream
@pytest.fixture(scope="module")
def trained(stream, tmp_path_factory):
    """Three tasks trained in memory (4 steps each); snapshots after each stage."""
    config, tasks = stream
    method = _method(config)
    backbone_before = _clone(method.backbone.model.state_dict().items())
    snapshots = [_clone(method.named_parameters())]
    for s, task in enumerate(tasks):
        set_seed(s)
        method.begin_task(s, task)
        _train_stage(method, task, s, config, 4, tmp_path_factory.mktemp("logs"))
        method.end_task(s, task, task.train)
        snapshots.append(_clone(method.named_parameters()))
    return method, backbone_before, snapshots


def test_the_shared_pool_and_keys_train_on_every_task_and_the_backbone_never(trained):
    method, backbone_before, snapshots = trained
    for before, after in itertools.pairwise(snapshots):
        assert not torch.equal(before["prompts"], after["prompts"])
        assert not torch.equal(before["keys"], after["keys"])
    for key, value in method.backbone.model.state_dict().items():
        assert torch.equal(value, backbone_before[key]), key
    assert not any(p.requires_grad for p in method.backbone.parameters())
    # Selections counted while training: 3 stages × 4 steps × batch 4 × N 3.
    assert int(method.usage.sum()) == 3 * 4 * 4 * 3


def test_selection_never_reads_a_task_id(trained, stream):
    # Answers independent of batch and task field: the contract tests, for every method. Here,
    # the selection itself: a sample's prompts do not depend on its batch or its task field.
    method, *_ = trained
    _, tasks = stream
    collate = Collator(method.backbone)
    mixed = [s for t in tasks for s in t.test]
    random.Random(0).shuffle(mixed)
    assert len({s.task for s in mixed[:5]}) > 1  # the first batch of 5 mixes tasks
    mixed = [dataclasses.replace(s, task="?") for s in mixed]  # and no task field to read
    alone = torch.cat([method.selection([s])[0] for s in mixed])
    assert torch.equal(method.selection(mixed)[0], alone)
    # Inference cost is constant in the number of tasks: always N·L_p prompt tokens.
    batch = collate(mixed[:3], with_answer=False)
    prefix = method.prefix(method.selection(mixed[:3])[0])
    embeds, _, _ = prompted_inputs(method.backbone, batch, prefix)
    assert prefix.shape == (3, 15, D) and embeds.shape[1] == batch.input_ids.shape[1] + 15


# ---------------------------------------------------------------------------- Eq. 4 diversity
def test_diversity_penalises_frequent_prompts_while_training_only_by_hand(stream):
    config, tasks = stream
    method = _method(config, pool_size=5, top_n=2, diversity=True)
    cosine = torch.tensor([[0.9, 0.8, 0.1, -0.2, 0.5], [0.0, 0.3, 0.2, 0.1, -0.5]])
    method.train()
    # Task 1: no counts yet, Eq. 3.
    assert not method._penalised()
    with torch.no_grad():
        method.usage.copy_(torch.tensor([6, 2, 1, 1, 0]))
    assert method._penalised()
    # Eq. 4: argmin γ·h, h = usage / 10. Row 0: γ = .1 .2 .9 1.2 .5 → γh = .06 .04 .09 .12 0.
    # Row 1: γ = 1 .7 .8 .9 1.5 → γh = .6 .14 .08 .09 0.
    assert method.select(cosine, penalised=True).tolist() == [[4, 1], [4, 2]]
    assert method.select(cosine).tolist() == [[0, 1], [1, 2]]  # Eq. 3
    # Ties at h = 0 (prompts never used) go to the nearer key.
    with torch.no_grad():
        method.usage.copy_(torch.tensor([5, 0, 0, 5, 0]))
    assert method.select(cosine, penalised=True).tolist() == [[1, 4], [1, 2]]
    method.eval()
    assert not method._penalised()  # inference: Eq. 3 whatever the counts

    # Counting: selections of a task are added to `usage` at its end, not during it.
    fresh = _method(config, diversity=True)
    fresh.begin_task(0, tasks[0])
    batch = Collator(fresh.backbone)(tasks[0].train[:4])
    fresh.training_loss(batch)
    selected, _ = fresh.selection(tasks[0].train[:4])
    assert int(fresh.usage.sum()) == 0
    fresh.end_task(0, tasks[0], [])
    assert torch.equal(fresh.usage, torch.bincount(selected.flatten(), minlength=10))


def test_bad_arguments_are_clear_config_errors(stream):
    config, _ = stream
    with pytest.raises(ConfigError, match=r"method.args.top_n: 4 must not exceed pool_size \(3\)"):
        _method(config, pool_size=3, top_n=4)
    with pytest.raises(ConfigError, match="method.args.pool_size: 0 must be at least 1"):
        _method(config, pool_size=0)
    with pytest.raises(ConfigError, match="method.args.key_loss_weight"):
        _method(config, key_loss_weight=-1.0)
    assert not _method(config, key_loss_weight=0.0).keys.requires_grad


# ---------------------------------------------------------------------------- a micro run
@pytest.fixture(scope="module")
def l2p_run(micro_backbone_dirs, micro_benchmark, tmp_path_factory):
    out = tmp_path_factory.mktemp("l2p-run")
    config = load_config(None, micro_overrides(micro_benchmark, out, "l2p", **{"train.lr": 0.01}))
    return config, run(config, progress=False), out / config.run_name


def test_run_saves_the_pool_analyses_and_predict_explains_the_selection(l2p_run, capsys):
    config, results, run_dir = l2p_run
    assert results.complete and len(results.matrix) == 3
    assert {s.trainable_parameters for s in results.stages} == {10 * 5 * D + 10 * C}
    states = [load_stage(run_dir / f"stage_{s}")[0] for s in (1, 2, 3)]
    assert all(set(state) == {"prompts", "keys", "usage"} for state in states)
    assert [int(state["usage"].sum()) for state in states] == [3 * 4 * 3 * s for s in (1, 2, 3)]
    # The selection histogram, recomputed from the restored stage-3 method.
    from mcit.predict import load_trained

    _, method, _, _ = load_trained(run_dir)
    tasks = {t.name: t for t in load_stream(config)}
    saved = json.loads((run_dir / "analysis" / "stage_3" / "prompt_selection.json").read_text())
    assert saved["rows"] == list(tasks) and saved["cols"] == [str(m) for m in range(1, 11)]
    for row, (name, task) in zip(saved["values"], tasks.items(), strict=True):
        selected, _ = method.selection(task.test)
        by_hand = [float((selected == m).any(1).float().mean()) for m in range(10)]
        assert row == pytest.approx(by_hand) and sum(row) == pytest.approx(3.0), name
    # mcit predict: the recorded answer, and the selected prompts with their key cosines.
    sample = tasks["gqa"].test[0]
    recorded = json.loads((run_dir / "predictions/stage_3/gqa.jsonl").read_text().splitlines()[0])
    argv = ["predict", str(run_dir), "--image", sample.media["image"]]
    assert main([*argv, "--question", sample.instruction, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["answer"] == recorded["prediction"]
    explanation = out["explanation"]
    cosines = explanation["key_cosines"]
    assert explanation["query"] == "image" and len(cosines) == 10
    ranked = sorted(range(10), key=lambda m: -cosines[m])[:3]
    assert explanation["selected"] == [{"prompt": m + 1, "cosine": cosines[m]} for m in ranked]


def test_ddp_moves_the_whole_pool(ddp_states):
    # Unselected prompts get an exact-zero gradient, not none: DDP needs every trainable tensor
    # in every step (rank equality itself: tests/test_ddp.py, for every method).
    rank0, _ = ddp_states["l2p"]
    assert set(rank0["after"]) == {"prompts", "keys", "usage"}
    for key in ("prompts", "keys"):
        assert not torch.equal(rank0["before"][key], rank0["after"][key]), key


def test_predict_shows_l2p_choices_as_readable_lines_not_json():
    """`mcit predict` prints a method's explanation through the method's class; L2P uses the
    default: one line per field, its selected prompts as numbered rows."""
    from mcit.methods.base import method_class
    from mcit.methods.inspection import explanation_lines
    from mcit.predict import Prediction, format_prediction

    cls, _ = method_class("l2p")
    assert not hasattr(cls, "format_explanation")  # the generic layout, from inspection
    explanation = {
        "query": "image",
        "selected": [{"prompt": 3, "cosine": 0.81234}, {"prompt": 1, "cosine": 0.5}],
        "key_cosines": [0.5, 0.1, 0.81234],
    }
    assert explanation_lines(cls, explanation) == [
        "query: image",
        "selected:",
        "  1. prompt 3, cosine 0.812",
        "  2. prompt 1, cosine 0.500",
        "key_cosines: 0.500, 0.100, 0.812",
    ]
    text = format_prediction(
        Prediction(
            run="r", method="l2p", stage=2, stages=2, question="q",
            media={"image": "i.png"},
            answer="a", explanation=explanation,
        )
    )  # fmt: skip
    assert text.splitlines()[3:] == explanation_lines(cls, explanation)
    assert "{" not in text
