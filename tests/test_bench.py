"""`mcit bench` plumbing on the micro backbone: exact parameter counts (by hand), the LLaVA-1.5-7B
accounting, pair-by-pair ratios on fake timings, fixed-length generation, the scaling's
per-task state, the bench file's schema and its report. No timing thresholds."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
import torch
from conftest import MICRO_TINY, micro_overrides

from mcit.bench.calls import probe_generation
from mcit.bench.lineup import MethodSpec, build_on, resolve_methods
from mcit.bench.paper import paper_figures, read_paper_figures
from mcit.bench.params import (
    count_method,
    llava_15_7b_config,
    meta_llava_backbone,
    paper_accounting,
)
from mcit.bench.replay import TaskReplay
from mcit.bench.report import bench_markdown, bench_text, claims
from mcit.bench.runner import BenchSettings, pick_samples, run_bench
from mcit.bench.scaling import measure_scaling
from mcit.bench.schema import BenchError, validate_bench
from mcit.bench.timing import (
    Call,
    Measurements,
    MemoryProbe,
    interleaved_rounds,
    paired_ratio,
    summarize,
)
from mcit.cli import main
from mcit.config import BackboneConfig, load_config
from mcit.data.collate import Collator
from mcit.errors import ConfigError
from mcit.methods.base import ModelShapes, method_class, method_names
from mcit.models.backbone import load_backbone
from mcit.models.efficientnet_lite import block_specs
from mcit.models.guidance import GuidanceEncoder
from mcit.runner import load_stream

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def backbone(micro_backbone_dirs):
    return load_backbone(BackboneConfig(tiny=MICRO_TINY))


def _numel(backbone) -> int:
    return sum(p.numel() for p in backbone.parameters())


def _lora_per_layer(h: int, m: int, r: int) -> int:
    """r·(d_in + d_out) for q, k, v, o (h→h), gate, up (h→m) and down (m→h)."""
    return 4 * r * (h + h) + 2 * r * (h + m) + r * (m + h)


# ---------------------------------------------------------------------------- parameters
def _llava_by_hand(config) -> int:
    """A llava-hf LLaVA's parameters from its config: Llama LM with an untied head, the vision
    tower (CLIP ViT: biased projections, pre and post layer norms; EfficientNet-Lite: bias-free
    convolutions, each followed by a batch norm's scale and shift), 2-layer MLP projector."""
    lm, vision = config.text_config, config.vision_config
    h, m, v, n = lm.hidden_size, lm.intermediate_size, lm.vocab_size, lm.num_hidden_layers
    llama = v * h + n * (4 * h * h + 3 * h * m + 2 * h) + h + v * h  # embed, layers, norm, head
    w = vision.hidden_size
    if vision.model_type == "mcit_efficientnet_lite":
        tower = 3 * 32 * 3 * 3 + 2 * 32  # stem
        for expand, k, _, cin, cout in block_specs()[: vision.num_blocks]:
            mid = cin * expand
            tower += (cin * mid + 2 * mid if expand != 1 else 0) + (mid * k * k + 2 * mid)
            tower += mid * cout + 2 * cout
    else:
        f, p = vision.intermediate_size, vision.patch_size
        positions = (vision.image_size // p) ** 2 + 1
        layer = 4 * (w * w + w) + 2 * 2 * w + (w * f + f) + (f * w + w)
        tower = 3 * p * p * w + w + positions * w + 2 * w + vision.num_hidden_layers * layer + 2 * w
    projector = (w * h + h) + (h * h + h)
    return llama + tower + projector


def test_the_micro_backbone_counts_as_its_config_says(backbone):
    assert _numel(backbone) == _llava_by_hand(backbone.model.config)


def test_counts_are_exact_for_lora_moelora_modalprompt_and_o_lora(backbone):
    h, m, layers = 48, 96, 2  # MICRO_TINY's LM
    c = 32  # MICRO_TINY's CLIP feature width
    base = _numel(backbone)
    cases = {
        "finetune-lora": ({"r": 4, "alpha": 8}, layers * _lora_per_layer(h, m, 4), 1),
        # E experts of rank r/E hold r·(d_in + d_out) in all, plus a router d_in × E per linear.
        "moelora": (
            {"r": 8, "alpha": 16, "experts": 4},
            layers * (_lora_per_layer(h, m, 8) + 4 * (6 * h + m)),
            1,
        ),
        # One task's prompts L·d and projection (d·d + d) + (d·c + c); three tasks are held.
        "modalprompt": ({}, 10 * h + (h * h + h) + (h * c + c), 3),
        # One block per task, only the current one trains.
        "o-lora": ({"r": 4, "alpha": 8}, layers * _lora_per_layer(h, m, 4), 3),
    }
    for name, (args, trainable, held) in cases.items():
        method = build_on(backbone, MethodSpec(name, name, args), CPU)
        TaskReplay(method).advance(3, leave_last_open=True)
        count = count_method(method, base)
        assert count.trainable == trainable, name
        assert count.added == held * trainable, name
        assert count.total == base + held * trainable, name
        assert count.trainable_pct == pytest.approx(100 * trainable / (base + held * trainable))
    assert cases["modalprompt"][1] == 4400


def test_every_declared_parameter_formula_counts_what_the_built_method_holds(backbone):
    """The paper-scale accounting trusts `parameters_by_formula` where a method declares one;
    on the tiny backbone it must give what building the method and counting it gives."""
    declared = []
    variants = [MethodSpec(name, name) for name in method_names()]
    variants.append(MethodSpec("mp-deep", "modalprompt", {"prompt_depth": "every-layer"}))
    for spec in variants:
        name = spec.label
        cls, args = method_class(spec.name, spec.args)
        method = build_on(backbone, spec, CPU)
        encoders = [v for v in vars(method).values() if isinstance(v, GuidanceEncoder)]
        width = encoders[0].dim if encoders else 0
        formula = cls.parameters_by_formula(
            args, ModelShapes(backbone.hidden_size, width, backbone.num_layers), 3
        )
        if formula is None:
            continue
        declared.append(name)
        assert formula.guidance_encoder == bool(encoders), name
        TaskReplay(method).advance(1)
        assert count_method(method, _numel(backbone)).added == formula.first_task, name
        method = build_on(backbone, spec, CPU)
        TaskReplay(method).advance(3, leave_last_open=True)
        count = count_method(method, _numel(backbone))
        assert (count.trainable, count.added) == (formula.trainable, formula.added), name
    # its guidance CLIP cannot be built on the meta device
    assert {"modalprompt", "mp-deep"} <= set(declared)


def test_methods_share_frozen_weights_and_full_fine_tuning_gets_its_own(backbone):
    lora = build_on(backbone, MethodSpec("finetune-lora", "finetune-lora", {"r": 2}), CPU)
    full = build_on(backbone, MethodSpec("finetune", "finetune"), CPU)
    shared = backbone.input_embeddings.weight
    assert lora.backbone.input_embeddings.weight is shared
    assert full.backbone.input_embeddings.weight is not shared
    assert full.backbone.input_embeddings.weight.requires_grad
    assert not any(p.requires_grad for p in backbone.parameters())  # the base stays frozen
    assert count_method(full, _numel(backbone)).added == 0
    assert torch.equal(full.backbone.input_embeddings.weight, shared)


def test_llava_15_7b_accounting_without_weights():
    model = meta_llava_backbone()
    assert model.input_embeddings.weight.is_meta
    assert _numel(model) == _llava_by_hand(llava_15_7b_config()) == 7_063_427_072  # 7.06B
    d, c, r, experts, m, layers = 4096, 768, 128, 8, 11008, 32
    per_task = 10 * d + (d * d + d) + (d * c + c)
    assert per_task == 19_968_768
    moelora = layers * (_lora_per_layer(d, m, r) + experts * (6 * d + m))
    acc = paper_accounting(methods=("modalprompt", "moelora"))
    mp, moe = acc["methods"]["modalprompt"], acc["methods"]["moelora"]
    assert (mp["trainable"], mp["added"]) == (per_task, 8 * per_task)
    assert mp["trainable_pct"] == pytest.approx(100 * per_task / (7_063_427_072 + 8 * per_task))
    assert (moe["trainable"], moe["added"]) == (moelora, moelora)
    # The papers' 0.27 % and 4.73 % are reproduced by these denominators (docs/bench.md).
    assert mp["nearest_matches_paper"] and "CLIP-L/336" in mp["nearest_variant"]
    assert moe["nearest_matches_paper"] and "projector" in moe["nearest_variant"]
    clip = acc["guidance_clip_parameters"]
    assert round(100 * per_task / (7_063_427_072 + clip + per_task), 2) == 0.27
    assert round(100 * (moelora + 20_979_712) / (7_063_427_072 + moelora), 2) == 4.73


# ---------------------------------------------------------------------------- timing
def test_summary_quartiles_by_hand():
    s = summarize([4.0, 1.0, 3.0, 2.0])
    assert (s.median, s.q1, s.q3, s.iqr, s.min, s.max, s.n) == (2.5, 1.75, 3.25, 1.5, 1, 4, 4)


def test_ratios_are_taken_pair_by_pair_not_as_a_ratio_of_medians():
    method, reference = [2.0, 6.0, 3.0], [1.0, 4.0, 1.0]
    ratio = paired_ratio(method, reference)
    assert ratio.time.values == [2.0, 1.5, 3.0]  # round by round
    assert ratio.time.median == 2.0  # while median(method) / median(reference) = 3
    assert ratio.speed.values == pytest.approx([0.5, 4 / 6, 1 / 3])
    assert ratio.speed.median == pytest.approx(0.5)
    with pytest.raises(ValueError, match="one reference per round"):
        paired_ratio([1.0, 2.0], [1.0])


class ScriptedClock:
    """Runs each call and returns the next scripted duration."""

    name = "scripted"

    def __init__(self, durations):
        self.durations = iter(durations)

    def time(self, fn):
        fn()
        return next(self.durations)


def test_rounds_interleave_rotate_and_drop_the_warm_up():
    order = []
    calls = {label: Call(run=lambda label=label: order.append(label)) for label in "ABC"}
    measured = interleaved_rounds(
        calls, rounds=2, warmup=1, clock=ScriptedClock(range(1, 10)), memory=MemoryProbe(CPU)
    )
    assert order == list("ABC" + "BCA" + "CAB")
    # Durations 1..9 in call order; the warm-up round's 1, 2, 3 are dropped.
    assert measured["A"].seconds == [6, 8]
    assert measured["B"].seconds == [4, 9]
    assert measured["C"].seconds == [5, 7]
    assert all(p > 0 for m in measured.values() for p in m.peak_bytes)
    from mcit.bench.runner import ratios_against

    vs = ratios_against(measured, "A", ("B", "A"))
    assert set(vs) == {"B"}
    assert vs["B"]["time"]["values"] == [6 / 4, 8 / 9]


def test_measurements_report_the_largest_peak_and_rise():
    m = Measurements([0.1, 0.2], [3 * 2**20, 5 * 2**20], [2**20, None])
    assert m.memory(MemoryProbe(CPU)) == {
        "measure": "process_peak_rss",
        "peak_mb": 5.0,
        "rise_mb": 1.0,
    }


# ---------------------------------------------------------------------------- generation
def test_generation_has_exactly_the_asked_length_even_when_eos_comes_first(
    backbone, micro_benchmark, tmp_path
):
    from mcit.methods.base import build_method

    method = build_method("zero-shot", backbone)
    tasks = load_stream(load_config(None, micro_overrides(micro_benchmark, tmp_path)))
    batch = Collator(backbone)(tasks[0].test[:2], with_answer=False)
    eos = backbone.tokenizer.eos_token_id

    def always_eos(_module, _inputs, logits):
        logits = logits.clone()
        logits[..., eos] = 1e4
        return logits

    handle = backbone.model.lm_head.register_forward_hook(always_eos)
    try:
        assert probe_generation(method, batch, 7)["lm_calls"] == 7
        assert backbone.generate(
            backbone.embed(batch.input_ids, batch.pixel_values), batch.attention_mask, 7
        ) == ["", ""]  # the default still stops at EOS
    finally:
        handle.remove()
    assert not backbone._exact_new_tokens


def test_bench_batches_share_one_prompt_length(backbone, micro_benchmark, tmp_path):
    tasks = load_stream(load_config(None, micro_overrides(micro_benchmark, tmp_path)))
    collate = Collator(backbone)
    for task in tasks:
        picked = pick_samples(task, collate, 3)
        lengths = {len(collate.encode(s, with_answer=False)[0]) for s in picked}
        pool = task.test + task.train
        counts = {}
        for s in pool:
            n = len(collate.encode(s, with_answer=False)[0])
            counts[n] = counts.get(n, 0) + 1
        if max(counts.values()) >= 3:
            assert len(lengths) == 1 and counts[lengths.pop()] == max(counts.values())
        assert len({s.id for s in picked}) == 3


# ---------------------------------------------------------------------------- scaling
def test_scaling_creates_t_tasks_prompts_stay_k_l_and_progressive_grows(
    backbone, micro_benchmark, tmp_path
):
    tasks = load_stream(load_config(None, micro_overrides(micro_benchmark, tmp_path)))
    batch = Collator(backbone)(tasks[0].test[:1], with_answer=False)
    specs = [
        MethodSpec("zero-shot", "zero-shot"),
        MethodSpec("modalprompt", "modalprompt"),
        MethodSpec("progressive-style", "modalprompt", {"selection": False}),
        MethodSpec("o-lora", "o-lora", {"r": 2, "alpha": 4}),
        MethodSpec("multitask", "multitask", {"r": 2, "alpha": 4}),
    ]
    out = measure_scaling(
        backbone, specs, [4, 1, 2], batch, 2, CPU, rounds=1, warmup=0,
        clock=ScriptedClock(iter(lambda: 0.5, None)), memory=MemoryProbe(CPU), base="zero-shot",
    )  # fmt: skip
    assert out["tasks"] == [1, 2, 4] and out["reference_tasks"] == 1
    by = {label: {e["tasks"]: e for e in entries} for label, entries in out["methods"].items()}
    base_len = by["zero-shot"][1]["prefill_tokens"]
    base = _numel(backbone)
    per_task = 4400
    block = 2 * _lora_per_layer(48, 96, 2)
    for t in (1, 2, 4):
        assert by["zero-shot"][t]["prefill_tokens"] == base_len
        assert by["modalprompt"][t]["prefill_tokens"] == base_len + 10 * min(3, t)  # ≤ k·L
        assert by["progressive-style"][t]["prefill_tokens"] == base_len + 10 * t  # T·L
        assert by["modalprompt"][t]["parameters"] == base + t * per_task  # T tasks created
        assert by["o-lora"][t]["parameters"] == base + t * block
        assert by["o-lora"][t]["stages"] == t
        assert by["multitask"][t]["stages"] == 1  # one joint stage, rebuilt for each T
        assert by["o-lora"][t]["lm_calls"] == 2
        assert by["o-lora"][t]["vs_base"]["time"]["median"] == 1.0
    assert out["growth"]["modalprompt"]["raw"] == [1.0, 1.0, 1.0]
    assert out["growth"]["zero-shot"]["base_normalised"] == [None, None, None]


def test_task_replay_leaves_the_last_stage_open(backbone):
    method = build_on(backbone, MethodSpec("modalprompt", "modalprompt"), CPU)
    replay = TaskReplay(method)
    assert replay.advance(3, leave_last_open=True) == 3
    assert [p.requires_grad for p in method.prompts] == [False, False, True]
    assert method.tasks_seen == ["task1", "task2"]
    replay.close()
    assert method.tasks_seen == ["task1", "task2", "task3"]
    assert not any(p.requires_grad for p in method.prompts)
    assert replay.can_reach(5) and replay.advance(5) == 5 and len(method.prompts) == 5


# ---------------------------------------------------------------------------- the bench file
# `bench_file` (a real micro bench run) is a session fixture in conftest: the report tests use it too.


def test_bench_file_follows_the_schema(bench_file):
    bench = json.loads(bench_file.read_text())
    assert validate_bench(bench) is bench
    assert list(bench["methods"]) == ["zero-shot", "moelora", "modalprompt"]
    s = bench["settings"]
    assert (s["stage"], s["rounds"], s["infer_batches"], s["new_tokens"]) == (2, 3, [1, 2], 3)
    assert s["timer"] == "perf_counter" and bench["paper_accounting"] is None
    moe, mp, base = (bench["methods"][k] for k in ("moelora", "modalprompt", "zero-shot"))
    assert moe["args"]["r"] == 8 and moe["args_source"].endswith("moelora.yaml")
    assert mp["args_source"] == "defaults" and base["train"] is None
    assert mp["parameters"]["trainable"] == 4400 and mp["parameters"]["added"] == 8800
    assert mp["parameters"]["helpers"] > 0  # the guidance CLIP, outside the method's state
    # AdamW holds two float32 moments per trainable value and a float32 step per tensor
    # (P_t, and the weight and bias of g_t's two linears).
    assert mp["train"]["optimizer_state_bytes"] == 2 * 4 * 4400 + 5 * 4
    held = mp["parameters"]["bytes"] + mp["parameters"]["helpers_bytes"]
    memory = mp["train"]["memory"]
    assert memory["alone_estimate_mb"] == pytest.approx(
        (held + 2 * 4 * 4400 + 5 * 4) / 2**20 + (memory["rise_mb"] or 0), abs=1e-3
    )
    for entry in bench["methods"].values():
        assert [i["batch"] for i in entry["inference"]] == [1, 2]
        for inf in entry["inference"]:
            assert inf["lm_calls"] == 3  # exactly new_tokens steps for every method
            assert len(inf["seconds_per_call"]["values"]) == 3
            assert inf["tokens_per_second"]["values"] == pytest.approx(
                [inf["batch"] * 3 / t for t in inf["seconds_per_call"]["values"]]
            )
    assert mp["inference"][0]["prefill_tokens"] == base["inference"][0]["prefill_tokens"] + 20
    scaling = bench["scaling"]
    assert [e["tasks"] for e in scaling["methods"]["modalprompt"]] == [1, 2]


def test_bench_file_ratios_are_pair_by_pair(bench_file):
    bench = json.loads(bench_file.read_text())
    mp, moe, base = (bench["methods"][k] for k in ("modalprompt", "moelora", "zero-shot"))
    rounds = list(
        zip(
            mp["train"]["step_seconds"]["values"],
            moe["train"]["step_seconds"]["values"],
            strict=True,
        )
    )
    assert mp["train"]["vs"]["moelora"]["time"]["values"] == pytest.approx(
        [a / b for a, b in rounds]
    )
    assert mp["train"]["vs"]["moelora"]["time"]["median"] == pytest.approx(
        summarize([a / b for a, b in rounds]).median
    )
    for i in range(2):
        mine = mp["inference"][i]["seconds_per_call"]["values"]
        ref = base["inference"][i]["seconds_per_call"]["values"]
        speed = mp["inference"][i]["vs"]["zero-shot"]["speed"]
        assert speed["values"] == pytest.approx([r / m for m, r in zip(mine, ref, strict=True)])
    assert "zero-shot" not in base["inference"][0]["vs"]
    claimed = {c["claim"]: c for c in claims(bench)}
    b1 = claimed["inference throughput × moelora (batch 1)"]
    assert b1["measured"] == mp["inference"][0]["vs"]["moelora"]["speed"]["median"]
    assert b1["met"] == (b1["measured"] >= 1.3)


def test_bench_report_tables_and_scaling_plot(bench_file, tmp_path):
    bench = json.loads(bench_file.read_text())
    md = bench_markdown(bench, tmp_path / "plots")
    png = tmp_path / "plots" / "bench-scaling.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "](plots/bench-scaling.png)" in md
    assert "| modalprompt |" in md and "## Efficiency benchmark" in md
    written = (bench_file.parent / "report" / "bench.md").read_text()
    assert "bench-scaling.png" in written and (bench_file.parent / "report" / "plots").is_dir()
    text = bench_text(bench)
    assert "modalprompt" in text and "| " not in text


def test_bad_bench_files_name_the_field(bench_file, tmp_path):
    bench = json.loads(bench_file.read_text())
    del bench["methods"]["modalprompt"]["parameters"]["trainable"]
    with pytest.raises(BenchError, match=r"methods\.modalprompt\.parameters\.trainable"):
        validate_bench(bench, "x.json")
    bench = json.loads(bench_file.read_text())
    bench["schema"] = "other/9"
    with pytest.raises(BenchError, match="x.json: field 'schema'"):
        validate_bench(bench, "x.json")


def test_bench_command_errors_are_one_line(micro_benchmark, tmp_path, capsys):
    assert main(["bench", "--tasks", "1,x", f"output_dir={tmp_path}"]) == 2
    assert "--tasks 1,x" in capsys.readouterr().err
    assert main(["bench", "--methods", "nope", f"output_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mcit bench: error:") and "'nope'" in err and "Traceback" not in err
    with pytest.raises(ConfigError, match="--rounds"):
        run_bench(load_config(None, []), BenchSettings(rounds=0))
    with pytest.raises(ConfigError, match="repeated"):
        resolve_methods(["moelora", "moelora"], None)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_clock_and_memory_probe():
    from mcit.bench.timing import Clock

    device = torch.device("cuda")
    clock, probe = Clock(device), MemoryProbe(device)
    x = torch.randn(512, 512, device=device)
    probe.start()
    seconds = clock.time(lambda: x @ x)
    peak, rise = probe.stop()
    assert clock.name == "cuda-events" and seconds > 0 and peak >= x.numel() * 4
    assert rise is not None


def test_a_version_1_bench_file_reads_with_its_baseline_renamed(tmp_path):
    """Bench files written before the references named roles (docs/results holds some) still
    read and render; their baseline key was the baseline method's own name."""
    source = Path(__file__).parents[1] / "docs" / "results" / "bench-cpu-tiny" / "bench.json"
    bench = json.loads(source.read_text())
    assert bench["schema"] == "mcit-bench/1" and "baseline" not in bench["settings"]["references"]
    validate_bench(bench, str(source))
    assert bench["settings"]["references"] == {"base": "zero-shot", "baseline": "moelora"}
    md = bench_markdown(bench, tmp_path / "plots")
    assert "time × moelora" in md and "The paper's efficiency claims" in md
    assert any(c["claim"].startswith("inference throughput × moelora") for c in claims(bench))


def test_paper_figures_are_data_and_a_bad_file_names_its_field(tmp_path):
    paper = paper_figures()
    assert (paper.method, paper.baseline) == ("modalprompt", "moelora")
    assert paper.ratio("inference_speed") == pytest.approx(3.43 / 2.41)
    assert paper.ratio("training_time") == pytest.approx(3.81 / 10.74)
    assert set(paper.accounting_methods) <= set(method_names())
    source = resources.files("mcit.bench") / "paper-figures.json"
    data = json.loads(source.read_text())
    data["targets"]["inference_speed_vs_base"] = "fast"
    bad = tmp_path / "figures.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(
        ConfigError, match=r"figures\.json: field 'targets\.inference_speed_vs_base'"
    ):
        read_paper_figures(bad)
    del data["accounting"]["tasks"]
    data["targets"]["inference_speed_vs_base"] = 0.9
    bad.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"field 'accounting\.tasks' is missing"):
        read_paper_figures(bad)
