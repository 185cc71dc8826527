"""The GPU check of the papers' setup, in one short slot of GPU time (run by gpu-check.sh).

On LLaVA-1.5-7B-shaped random weights (scripts/random-llava.py; speed and memory do not depend
on the values), for each method (ModalPrompt, MoELoRA, finetune-lora: `configs/coin/<method>.yaml`,
bf16, gradient checkpointing) under each engine (`configs/accelerate/<engine>.yaml`, launched by
`accelerate launch`): stage 1 of a two-task coin-mini stream (a few steps, `--stop-after-stage 1`:
train, save, evaluate), then the same command again (resume: restore stage 1, train and evaluate
stage 2), then `mcit predict` on the saved run (generate; once per method, after the first
engine). Writes one JSON: per case the exit codes, wall times, step time, peak GPU memory of
training beside the papers' figures, and the resume and generation checks.

    python scripts/gpu-check.py OUT.json [--cpu] [--workdir DIR] [--steps N]

`--cpu`: the same steps on the CPU at tiny scale (`random-llava.py --tiny`), DeepSpeed in one
process as the tests run it: a dry run of everything but the GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
METHODS = ("modalprompt", "moelora", "finetune-lora")
ENGINES = ("ddp", "deepspeed-zero2")
# Peak training memory on one GPU, LLaVA-1.5-7B (ModalPrompt paper, efficiency table).
PAPER_PEAK_GB = {"modalprompt": 14.1, "moelora": 15.6}
# What results.json records for each launch config run with one process: ddp.yaml's one process
# is plain training (DDP needs two; NCCL refuses two ranks on one GPU), ZeRO-2 is the engine.
EXPECTED_ENGINE = {"ddp": "single", "deepspeed-zero2": "deepspeed"}
PEAK_NOTE = (
    "training peak with batch 4 x accumulation 2 on random weights, two coin-mini tasks; the "
    "papers' figures are for their own batch sizes and data: compare orders of magnitude"
)
NOT_RUN = {
    "fsdp": "refused by mcit before any work: FSDP shards the weights (mcit.train.engines)",
    "deepspeed-zero3": "refused by mcit before any work: ZeRO-3 shards the weights",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--cpu", action="store_true", help="tiny-scale dry run on the CPU")
    parser.add_argument("--workdir", type=Path, default=None, help="default: OUT's folder/work")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per stage")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--engines", default=",".join(ENGINES))
    args = parser.parse_args(argv)
    started = time.time()
    work = args.workdir or args.out.parent / "gpu-check-work"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    report: dict = {
        "script": "scripts/gpu-check.sh",
        "mode": "cpu-dry-run" if args.cpu else "gpu",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **_machine(),
        "paper_peak_gpu_memory_gb": PAPER_PEAK_GB,
        "peak_memory_note": PEAK_NOTE,
        "not_run": NOT_RUN,
        "cases": [],
    }

    models = work / "models"
    shape = ["--tiny", "--dtype", "float32"] if args.cpu else ["--dtype", "bfloat16"]
    step = _run(
        [sys.executable, str(ROOT / "scripts" / "random-llava.py"), str(models), *shape], work
    )
    report["make_model_seconds"] = step["seconds"]
    if step["rc"] != 0:
        return _finish(report, args.out, started, f"random-llava.py failed: {step['tail']}")
    data = work / "coin-mini"
    step = _mcit(
        ["data", "generate", "coin-mini", "--out", str(data), "--order", "scienceqa,gqa",
         "--size", "64,8"],
        work,
    )  # fmt: skip
    if step["rc"] != 0:
        return _finish(report, args.out, started, f"data generate failed: {step['tail']}")
    image = next(data.rglob("images/*.png"))

    batch = 2 if args.cpu else 4
    engines = args.engines.split(",")
    for engine in engines:
        for method in args.methods.split(","):
            name = f"{engine}-{method}"
            overrides = [
                f"data.benchmark={data}",
                "data.order=[scienceqa, gqa]",
                "data.test_per_task=8",
                f"model.backbone.path={models / 'llava'}",
                f"model.backbone.clip_path={models / 'clip'}",
                f"train.max_steps_per_task={args.steps}",
                f"train.batch_size={batch}",
                "train.grad_accum=2",
                "train.log_every=1",
                f"eval.batch_size={batch * 2}",
                "eval.max_new_tokens=8",
                f"output_dir={work / 'runs'}",
                f"name={name}",
            ]
            head = [*_launcher(engine, args.cpu), "run", "--quiet"]
            config = ["--config", str(ROOT / "configs" / "coin" / f"{method}.yaml"), *overrides]
            case: dict = {"launch_config": f"{engine}.yaml", "method": method}
            env = _env(engine, args.cpu)
            first = _run([*head, "--stop-after-stage", "1", *config], work, env)
            second = _run([*head, *config], work, env)
            case["stage_1_rc"], case["stage_1_seconds"] = first["rc"], first["seconds"]
            case["resume_rc"], case["resume_seconds"] = second["rc"], second["seconds"]
            run_dir = work / "runs" / name
            if first["rc"] or second["rc"]:
                case["error"] = (first if first["rc"] else second)["tail"]
            else:
                case.update(_read_run(run_dir, method))
                case["engine_ok"] = case["engine_recorded"] == EXPECTED_ENGINE.get(engine)
            # Generation from a saved run does not depend on the engine that trained it: once
            # per method (after the first engine) keeps the check within its slot.
            if case.get("complete") and engine == engines[0]:
                answer = _mcit(
                    ["predict", str(run_dir), "--image", str(image), "--question",
                     "What shape is in the picture?", "--json"],
                    work,
                )  # fmt: skip
                case["predict_rc"] = answer["rc"]
                case["predict_seconds"] = answer["seconds"]
                case["predict_ok"] = answer["rc"] == 0 and '"answer"' in answer["stdout"]
            report["cases"].append(case)
            print(json.dumps(case), flush=True)
    return _finish(report, args.out, started, None)


def _read_run(run_dir: Path, method: str) -> dict:
    results = json.loads((run_dir / "results.json").read_text())
    attempts = [
        json.loads(line)
        for line in (run_dir / "logs" / "train.jsonl").read_text().splitlines()
        if '"event": "attempt"' in line
    ]
    stages = results["stages"]
    peaks = [s.get("train_peak_gpu_memory_bytes") for s in stages]
    peak = max((p for p in peaks if p is not None), default=None)
    steps = sum(s["train_steps"] for s in stages)
    return {
        "complete": results["complete"],
        "engine_recorded": results["manifest"].get("engine"),
        "zero_stage": results["manifest"].get("zero_stage"),
        # Resumed: the second attempt started with stage 1 done and trained stage 2 only.
        "resumed_after_stage_1": [a["finished_stages"] for a in attempts] == [0, 1],
        "train_steps": steps,
        "seconds_per_step": round(sum(s["train_seconds"] for s in stages) / max(steps, 1), 3),
        "train_peak_gpu_memory_gb": None if peak is None else round(peak / 2**30, 2),
        "paper_peak_gpu_memory_gb": PAPER_PEAK_GB.get(method),
        "trainable_parameters": stages[-1]["trainable_parameters"],
        "final_loss": stages[-1]["final_loss"],
        "matrix": results["matrix"],
    }


def _launcher(engine: str, cpu: bool) -> list[str]:
    """`accelerate launch` with the engine's config; on the CPU, the process itself (DeepSpeed
    set up through the environment, as the tests do: `accelerate launch` wants GPUs for it)."""
    if cpu:
        return [sys.executable, "-m", "mcit"]
    config = ROOT / "configs" / "accelerate" / f"{engine}.yaml"
    return [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
        "--num_processes", "1", "-m", "mcit",
    ]  # fmt: skip


def _env(engine: str, cpu: bool) -> dict:
    env = dict(os.environ)
    if cpu and engine.startswith("deepspeed"):
        env.update(
            ACCELERATE_USE_DEEPSPEED="true",
            ACCELERATE_DEEPSPEED_CONFIG_FILE=str(ROOT / "configs/accelerate/deepspeed/zero2.json"),
            ACCELERATE_DEEPSPEED_ZERO3_INIT="false",
            RANK="0", LOCAL_RANK="0", WORLD_SIZE="1",
            MASTER_ADDR="127.0.0.1", MASTER_PORT="29631",
        )  # fmt: skip
    return env


def _mcit(args: list[str], work: Path) -> dict:
    return _run([sys.executable, "-m", "mcit", *args], work)


def _run(command: list[str], work: Path, env: dict | None = None) -> dict:
    started = time.time()
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    with (work / "commands.log").open("a") as log:
        log.write(f"$ {' '.join(command)}\n{proc.stdout[-4000:]}{proc.stderr[-4000:]}\n")
    return {
        "rc": proc.returncode,
        "seconds": round(time.time() - started, 1),
        "stdout": proc.stdout,
        "tail": (proc.stderr or proc.stdout)[-1500:],
    }


def _machine() -> dict:
    import torch

    cuda = torch.cuda.is_available()
    return {
        "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
        "gpu_memory_gb": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        if cuda
        else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "mcit_commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
    }


def _finish(report: dict, out: Path, started: float, error: str | None) -> int:
    report["seconds"] = round(time.time() - started, 1)
    if error:
        report["error"] = error
    cases = report["cases"]
    report["all_passed"] = (
        error is None
        and bool(cases)
        and all(
            c.get("complete")
            and c.get("engine_ok")
            and c.get("resumed_after_stage_1")
            and (c.get("predict_ok") or c["launch_config"] != cases[0]["launch_config"])
            for c in cases
        )
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    tmp.replace(out)
    print(f"gpu-check: {'passed' if report['all_passed'] else 'FAILED'}; {out}", flush=True)
    return 0 if report["all_passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
