"""ModalPrompt end to end: a micro run's saved stages and analyses, `mcit predict` on it, an HF
LLaVA directory with a separate CLIP for guidance, and DDP."""

import json

import pytest
import torch
from conftest import micro_overrides

from mcit.cli import main
from mcit.config import load_config
from mcit.data.collate import Collator
from mcit.predict import load_trained
from mcit.runner import load_stream, run
from mcit.train.checkpoint import load_stage

SCHEMA = {"title", "row_label", "col_label", "rows", "cols", "values", "fmt"}


@pytest.fixture(scope="module")
def mp_run(micro_backbone_dirs, micro_benchmark, tmp_path_factory):
    out = tmp_path_factory.mktemp("mp-run")
    overrides = micro_overrides(
        micro_benchmark, out, "modalprompt", **{"method.args": "{top_k: 2}", "train.lr": 0.01}
    )
    config = load_config(None, overrides)
    results = run(config, progress=False)
    return config, results, out / config.run_name


def test_old_prompts_in_the_saved_stages_never_change(mp_run):
    _, results, run_dir = mp_run
    assert results.complete and len(results.matrix) == 3
    stages = [load_stage(run_dir / f"stage_{s}")[0] for s in (1, 2, 3)]
    for s, state in enumerate(stages):
        assert {k.split(".")[0] + "." + k.split(".")[1] for k in state} == {
            f"{kind}.{t}" for kind in ("prompts", "projections") for t in range(s + 1)
        }
    for t in range(3):
        for key in [k for k in stages[t] if k.startswith((f"prompts.{t}", f"projections.{t}."))]:
            for later in stages[t + 1 :]:
                assert torch.equal(stages[t][key], later[key]), key
    # Trainable: one task's prompts and projection; L·d + (d·d + d) + (d·c + c), d 48, c 32.
    d, c = 48, 32
    assert {s.trainable_parameters for s in results.stages} == {10 * d + d * d + d + d * c + c}


def test_analyses_are_saved_and_match_a_recomputation(mp_run):
    config, results, run_dir = mp_run
    names = ["scienceqa", "gqa", "grounding"]
    for stage in (1, 2, 3):
        files = sorted(p.name for p in (run_dir / "analysis" / f"stage_{stage}").iterdir())
        assert files == [
            "prototype_similarity.json",
            "selection_accuracy.json",
            "selection_top1.json",
            "selection_topk.json",
        ]
    read = {p.stem: json.loads(p.read_text()) for p in (run_dir / "analysis" / "stage_3").iterdir()}
    for matrix in read.values():
        assert set(matrix) == SCHEMA and matrix["rows"] == names
    assert read["prototype_similarity"]["cols"] == names
    top1, topk = read["selection_top1"]["values"], read["selection_topk"]["values"]
    for row1, rowk in zip(top1, topk, strict=True):
        assert sum(row1) == pytest.approx(1.0) and sum(rowk) == pytest.approx(2.0)  # k = 2
        assert all(a <= b for a, b in zip(row1, rowk, strict=True))
    accuracy = read["selection_accuracy"]
    assert accuracy["cols"] == ["top-1", "top-2"]
    for i in range(3):
        assert accuracy["values"][i] == [top1[i][i], topk[i][i]]
    # The same numbers from the restored stage-3 method, by hand.
    _, method, stage, _ = load_trained(run_dir)
    assert stage == 3
    tasks = {t.name: t for t in load_stream(config)}
    for i, name in enumerate(names):
        s = method.select(tasks[name].test).similarity
        expected = s.mean(0).tolist()
        assert read["prototype_similarity"]["values"][i] == pytest.approx(expected, abs=1e-6)
        own_top1 = float((s.argmax(1) == i).float().mean())
        assert accuracy["values"][i][0] == pytest.approx(own_top1)
    info = results.stages[2].analysis
    assert info["selection_k"] == 2
    assert info["selection_accuracy_top1"] == pytest.approx(sum(top1[i][i] for i in range(3)) / 3)
    # Stage 1: one prototype, so every sample selects task 1.
    first = json.loads((run_dir / "analysis/stage_1/selection_top1.json").read_text())
    assert first["cols"] == ["scienceqa"] and first["values"] == [[1.0]]


def test_predict_answers_as_the_evaluation_did_and_shows_the_selection(mp_run, capsys):
    config, _, run_dir = mp_run
    tasks = {t.name: t for t in load_stream(config)}
    for stage, task in ((3, "gqa"), (1, "scienceqa")):
        sample = tasks[task].test[0]
        recorded = json.loads(
            (run_dir / "predictions" / f"stage_{stage}" / f"{task}.jsonl")
            .read_text()
            .splitlines()[0]
        )
        assert recorded["id"] == sample.id
        argv = ["predict", str(run_dir), "--image", sample.media["image"]]
        argv += ["--question", sample.instruction, "--stage", str(stage), "--json"]
        assert main(argv) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["answer"] == recorded["prediction"] and out["stage"] == stage
        every = out["explanation"]["all"]
        assert [e["task"] for e in every] == ["scienceqa", "gqa", "grounding"][:stage]
        ranked = sorted(every, key=lambda e: -e["similarity"])[: min(2, stage)]
        assert out["explanation"]["selected"] == ranked
        for e in every:  # s = 0.5·cos(image) + 0.5·cos(text)
            assert e["similarity"] == pytest.approx(
                0.5 * e["image_cosine"] + 0.5 * e["text_cosine"]
            )
    # The readable form names the selected tasks with their similarities.
    assert (
        main(["predict", str(run_dir), "--image", sample.media["image"], "--question", "Why?"]) == 0
    )
    text = capsys.readouterr().out
    assert "answer:" in text and "selected prompts (most similar first" in text
    assert text.count(" s = ") == 1 + 2 + 3  # the formula, 2 selected, 3 learned


def test_predict_errors_are_one_clear_line(mp_run, tmp_path, capsys):
    _, _, run_dir = mp_run
    image = next((run_dir.parent).rglob("*.png"), None) or _png(tmp_path)
    cases = [
        ([str(tmp_path / "nope"), "--image", str(image)], "not a run directory"),
        ([str(run_dir), "--image", str(image), "--stage", "4"], "finished stages are 1..3"),
        ([str(run_dir), "--image", str(tmp_path / "x.png")], "no such image file"),
        ([str(run_dir), "--image", str(run_dir / "results.json")], "not a readable image"),
        ([str(run_dir), "--image", str(image), "--max-new-tokens", "0"], "must be at least 1"),
        ([str(run_dir), "--image", str(image), "--max-new-tokens", "-1"], "must be at least 1"),
    ]
    for args, message in cases:
        assert main(["predict", *args, "--question", "What?"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("mcit predict: error:") and message in err and "Traceback" not in err


def test_predict_reads_an_image_tag_in_the_question_as_the_data_loader_does(mp_run, capsys):
    config, _, run_dir = mp_run
    sample = next(t for t in load_stream(config) if t.name == "gqa").test[0]
    answers = []
    for question in (sample.instruction, f"<image>\n{sample.instruction}"):
        argv = ["predict", str(run_dir), "--image", sample.media["image"], "--json"]
        assert main([*argv, "--question", question]) == 0
        answers.append(json.loads(capsys.readouterr().out)["answer"])
    assert answers[0] == answers[1]
    argv = ["predict", str(run_dir), "--image", sample.media["image"]]
    assert main([*argv, "--question", "<image> <image> What?"]) == 2
    assert "2 <image> tags" in capsys.readouterr().err


def _png(tmp_path):
    from PIL import Image

    path = tmp_path / "im.png"
    Image.new("RGB", (64, 64), (10, 200, 30)).save(path)
    return path


# ---------------------------------------------------------------------------- an HF LLaVA


def test_hf_llava_with_a_local_clip_runs_and_freezes_exactly(
    micro_backbone_dirs, micro_benchmark, hf_llava_dir, tmp_path
):
    from mcit.methods.base import build_method
    from mcit.models.backbone import load_backbone

    _, clip_dir = micro_backbone_dirs
    extra = {
        "model.backbone.name": "hf",
        "model.backbone.path": str(hf_llava_dir),
        "model.backbone.clip_path": str(clip_dir),
        "train.lr": 0.01,
    }
    config = load_config(None, micro_overrides(micro_benchmark, tmp_path, "modalprompt", **extra))
    results = run(config, progress=False)
    assert results.complete and all(v is not None for v in results.matrix[-1])
    run_dir = tmp_path / config.run_name
    first, last = (load_stage(run_dir / f"stage_{s}")[0] for s in (1, 3))
    assert first["prompts.0"].shape == (10, 40) and last["projections.2.2.weight"].shape == (32, 40)
    for key in first:
        assert torch.equal(first[key], last[key]), key
    assert (run_dir / "analysis" / "stage_3" / "selection_top1.json").is_file()

    # In memory: the prompts go after BOS and before LLaVA-1.5's system prompt, the guidance
    # CLIP preprocesses its own 64-px images, and the backbone is bit-identical after training.
    backbone = load_backbone(config.model.backbone)
    before = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    method = build_method("modalprompt", backbone, {})
    assert method.guidance._pixel_values == method.guidance._load_pixels
    assert backbone.chat.system.startswith("A chat between")
    task = load_stream(config)[0]
    method.begin_task(0, task)
    batch = Collator(backbone)(task.train[:2])
    embeds, mask, labels = method._spliced_inputs(batch, torch.zeros(2, 1, dtype=torch.long))
    plain = backbone.embed(batch.input_ids, batch.pixel_values)
    system_ids = backbone.tokenizer(backbone.chat.system, add_special_tokens=False)["input_ids"]
    for b in range(2):
        start = int(batch.attention_mask[b].argmax())
        assert batch.input_ids[b, start + 1 : start + 1 + len(system_ids)].tolist() == system_ids
        assert torch.equal(embeds[b, start + 1 : start + 11], method.prompts[0].detach())
        assert torch.equal(embeds[b, start + 11], plain[b, start + 1])  # the system prompt
    loss = method.training_loss(batch).loss
    loss.backward()
    torch.optim.SGD(method.trainable_parameters(), lr=1.0).step()
    for key, value in backbone.model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_hf_backbone_without_a_clip_is_a_clear_error(
    micro_benchmark, hf_llava_dir, tmp_path, capsys
):
    argv = [
        "run",
        "method.name=modalprompt",
        "model.backbone.name=hf",
        f"model.backbone.path={hf_llava_dir}",
        f"output_dir={tmp_path}",
        f"data.benchmark={micro_benchmark}",
    ]
    assert main(argv) == 2
    assert "model.backbone.clip_path: ModalPrompt needs a local CLIP" in capsys.readouterr().err


# ---------------------------------------------------------------------------- DDP
def test_ddp_trains_the_prompt_and_its_projection(ddp_states):
    # Rank equality itself: tests/test_ddp.py, for every method.
    rank0, _ = ddp_states["modalprompt"]
    assert set(rank0["after"]) == {"prompts.0", *(f"projections.0.{i}.{w}" for i in (0, 2)
                                                  for w in ("weight", "bias"))}  # fmt: skip
    for key in rank0["after"]:
        assert not torch.equal(rank0["before"][key], rank0["after"][key]), key
