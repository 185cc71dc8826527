"""The `mcit` command. Every subcommand turns bad input into one clear line, not a traceback."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcit.evaluation.matrix_files import AccuracyMatrix

# Quiet the libraries' start-up chatter before they are imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # mcit never downloads at run time

DEFAULT_CONFIG = "configs/coin-mini/modalprompt.yaml"


def _cmd_run(args: argparse.Namespace) -> int:
    from mcit.config import load_config
    from mcit.runner import format_matrix, run

    if args.help_config:  # every key, and the chosen method's own (method.name=... picks it)
        from mcit.config import config_help
        from mcit.methods.base import method_class

        config = load_config(args.config, args.overrides)
        cls, _ = method_class(config.method.name, {})
        rows = config_help() + config_help(cls.args_class, "method.args.")
        for key, default, text in rows:
            print(f"{key} = {default}\n    {text}")
        return 0
    config = load_config(args.config, args.overrides)
    results = run(config, progress=not args.quiet, stop_after_stage=args.stop_after_stage)
    from accelerate import PartialState

    if PartialState().is_main_process:
        from mcit.evaluation.continual import scale_note
        from mcit.evaluation.matrix_files import matrix_from_results
        from mcit.methods.base import registered_class

        run_dir = Path(config.output_dir) / config.run_name
        matrix = matrix_from_results(results)
        print(
            "\nAccuracy matrix (rows: after training stage; columns: task; "
            f"scores {scale_note(matrix.ceilings)}) — {config.method.name}"
        )
        cls = registered_class(config.method.name)
        if cls is not None and cls.reconstruction:
            print(f"({config.method.name}: {cls.reconstruction})")
        print(format_matrix(results))
        _print_summary(matrix)
        print(f"\nrun directory: {run_dir}")
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _print_summary(matrix: AccuracyMatrix) -> None:
    if len(matrix.matrix) != len(matrix.tasks):
        final = [v for v in matrix.matrix[-1] if v is not None]
        if final:
            print(f"mean over tasks: {sum(final) / len(final):.2f}")
        return
    summary = matrix.metrics()["summary"]
    shown = {k: v for k, v in summary.items() if v is not None}
    print("  ".join(f"{k}: {v:.2f}" for k, v in shown.items()))


def _pretrain_device(name: str):
    """`torch.device(name)` when this machine has it, else what is wrong (a string)."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        return "not a torch device (cpu, cuda, cuda:N)"
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        return "only cpu and cuda devices are supported"
    if not torch.cuda.is_available():
        return f"this torch ({torch.__version__}) sees no CUDA device"
    if (device.index or 0) >= torch.cuda.device_count():
        return f"this machine has {torch.cuda.device_count()} CUDA device(s)"
    return device


def _cmd_pretrain(args: argparse.Namespace) -> int:
    """Rebuild a tiny base (`--recipe`, into `--out`), or show where the default one is."""
    from mcit.pretrain.build import BuildError, build_base
    from mcit.pretrain.recipes import DEFAULT_RECIPE, RECIPES, recipe
    from mcit.pretrain.shipped import ensure_tiny_backbone

    name = args.recipe or DEFAULT_RECIPE
    if name not in RECIPES:
        print(
            f"mcit pretrain: error: --recipe {name}: unknown (known: {', '.join(RECIPES)})",
            file=sys.stderr,
        )
        return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    config = recipe(name)
    device = _pretrain_device(args.device)
    if isinstance(device, str):
        print(f"mcit pretrain: error: --device {args.device}: {device}", file=sys.stderr)
        return 2
    if args.out:
        try:
            root = build_base(
                config,
                Path(args.out),
                resume=args.resume,
                progress=not args.quiet,
                recipe=name,
                checkpoint_minutes=args.checkpoint_minutes,
                max_stage_seconds=args.max_minutes * 60 if args.max_minutes else None,
                device=device,
            )
        except BuildError as err:
            print(f"mcit pretrain: error: {err}", file=sys.stderr)
            return 2
        if not (root / "DONE").is_file():
            print(
                f"unfinished (time limit); continue with: mcit pretrain --recipe {name} "
                f"--out {root} --resume"
            )
            return 0
    else:
        llava_dir, _ = ensure_tiny_backbone(config, progress=not args.quiet)
        root = llava_dir.parent
    from mcit.errors import BackboneError
    from mcit.files import read_json

    card = read_json(root / "model_card.json", BackboneError)
    probe = card["probe"]
    print(f"tiny base ({card['recipe'] or 'custom'}): {root}")
    print(
        f"built in {sum(card['seconds'].values()):.0f} s; held-out probe: mean over skills "
        f"{probe['skills_mean']} % (lowest {probe['skills_min']} %), boxes with IoU > 0.5 "
        f"{probe['where_iou50']} %, captions CIDEr {probe['captions_cider']}"
    )
    for skill, score in probe["skills"].items():
        print(f"  {skill:<14} {score:5.1f}")
    return 0


def _cmd_data_import(args: argparse.Namespace) -> int:
    """A real benchmark from the user's local copy, written in mcit's format, then validated."""
    from mcit.data.benchmarks import validate_benchmark
    from mcit.data.coin_import import import_coin
    from mcit.data.micl_import import import_micl

    if args.benchmark not in ("coin", "micl"):
        raise SystemExit(
            f"mcit data import: unknown benchmark '{args.benchmark}' (known: coin, micl)"
        )
    if args.benchmark == "micl":
        if args.instructions != "original" or args.images:
            raise SystemExit("mcit data import: --instructions and --images are for coin")
        out = import_micl(args.root, args.out)
    else:
        done = import_coin(args.root, args.out, args.instructions, args.images)
        out = done.out
        print(f"instructions: {done.instructions}")
        for name, n in done.counts.items():
            print(f"  {name:<10} {n} test records")
        for note in done.notes:
            print(f"note: {note}")
    print(f"wrote {out}")
    report = validate_benchmark(out)
    print(report.format())
    if not report.ok:
        print(
            f"mcit data import: the media or records have the problems above; fix them, then "
            f"`mcit data validate {out}`",
            file=sys.stderr,
        )
        return 2
    return 0


def _cmd_data_generate(args: argparse.Namespace) -> int:
    from mcit.data.micl_mini.generate import generate_micl_mini
    from mcit.data.synthetic.coin_mini import generate_coin_mini

    if args.benchmark not in ("coin-mini", "micl-mini"):
        raise SystemExit(
            f"mcit data generate: unknown benchmark '{args.benchmark}' "
            "(known: coin-mini, micl-mini)"
        )
    if args.benchmark == "micl-mini" and args.order:
        print(
            "mcit data generate: error: --order: micl-mini writes all six tasks with its two "
            "orders (order1, order2); choose one with data.order when running",
            file=sys.stderr,
        )
        return 2
    order = args.order.split(",") if args.order else None
    kwargs = {}
    if args.size:
        train, _, test = args.size.partition(",")
        if not train.isdigit() or (test and not test.isdigit()):
            print(
                f"mcit data generate: error: --size {args.size}: expected TRAIN[,TEST] counts",
                file=sys.stderr,
            )
            return 2
        kwargs["train_size"] = int(train)
        if test:
            kwargs["test_size"] = int(test)
    try:
        if args.benchmark == "micl-mini":
            out = generate_micl_mini(Path(args.out), seed=args.seed, **kwargs)
        else:
            out = generate_coin_mini(Path(args.out), seed=args.seed, order=order, **kwargs)
    except (ValueError, FileExistsError) as err:
        print(f"mcit data generate: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


def _cmd_data_validate(args: argparse.Namespace) -> int:
    from mcit.data.benchmarks import resolve_benchmark, validate_benchmark
    from mcit.data.builtin import register_builtin_benchmarks

    register_builtin_benchmarks()
    root = resolve_benchmark(args.path)
    report = validate_benchmark(root)
    print(report.format())
    if report.ok and (args.config or args.lengths):
        _print_long_records(root, args.config)
    return 0 if report.ok else 2  # the exit status of every command's input error


def _print_long_records(root: Path, config_path: str | None) -> None:
    """Training records longer than the run config's model can take (they would be cut)."""
    from mcit.config import load_config
    from mcit.data.benchmarks import load_benchmark_spec, load_tasks
    from mcit.data.collate import Collator
    from mcit.data.sample import stream_modalities
    from mcit.models.backbone import load_backbone

    config = load_config(config_path)
    spec = load_benchmark_spec(root)
    total = 0
    tasks = load_tasks(spec, order=[t.name for t in spec.tasks])
    collate = Collator(load_backbone(config.model.backbone, stream_modalities(tasks)))
    for task, files in zip(tasks, spec.tasks, strict=True):
        long = [(s, n) for s in task.train if (n := collate.length(s)) > collate.max_length]
        total += len(long)
        for sample, n in long[:20]:
            print(
                f"  warning: {files.train}, record id {sample.id}, field 'conversations': "
                f"{n} tokens with the image slots, more than the model's max_length "
                f"{collate.max_length}; training cuts its oldest text after the image"
            )
        if len(long) > 20:
            print(f"  warning: ... and {len(long) - 20} more in task {task.name}")
    source = config_path or "the default config"
    print(
        f"lengths: {total} training record(s) longer than max_length {collate.max_length} "
        f"of {source}'s backbone" + (" (warnings do not fail validation)" if total else "")
    )


def _cmd_data_inspect(args: argparse.Namespace) -> int:
    from mcit.data.benchmarks import load_benchmark_spec, load_tasks, resolve_benchmark
    from mcit.data.builtin import register_builtin_benchmarks

    register_builtin_benchmarks()
    root = resolve_benchmark(args.benchmark, seed=args.seed)
    tasks = load_tasks(load_benchmark_spec(root), train_limit=args.n, test_limit=args.n)
    print(f"benchmark folder: {root}")
    for task in tasks:
        print(f"\n== {task.name} ({task.metric}, {task.modality})")
        for sample in task.test[: args.n]:
            media = ", ".join(f"{kind} {path}" for kind, path in sample.media.items())
            print(f"  [{sample.id}] {media or '(text only)'}")
            print("    Q: " + sample.instruction.replace("\n", "\n       "))
            print(f"    A: {sample.references[:3]}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from mcit.predict import format_prediction, predict_run

    media = {m: getattr(args, m) for m in ("image", "audio", "video") if getattr(args, m)}
    prediction = predict_run(
        args.run, media, args.question, stage=args.stage, max_new_tokens=args.max_new_tokens
    )
    print(json.dumps(asdict(prediction), indent=2) if args.json else format_prediction(prediction))
    return 0


def _int_list(flag: str, text: str) -> list[int]:
    from mcit.errors import ConfigError

    if text.strip().lower() in ("", "none"):
        return []
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(
            f"{flag} {text}: expected comma-separated integers, e.g. 1,2,4,8"
        ) from None


def _cmd_bench(args: argparse.Namespace) -> int:
    from mcit.bench.report import bench_markdown, bench_text
    from mcit.bench.runner import BenchSettings, run_bench
    from mcit.config import load_config
    from mcit.files import write_json_atomic, write_text_atomic

    config = load_config(args.config, args.overrides)
    settings = BenchSettings(
        methods=[m for m in args.methods.split(",") if m.strip()] if args.methods else None,
        tasks=_int_list("--tasks", args.tasks),
        scaling_methods=args.scaling_methods.split(",") if args.scaling_methods else None,
        rounds=args.rounds,
        warmup=args.warmup,
        stage=args.stage,
        train_batch=args.train_batch,
        infer_batch=args.infer_batch,
        new_tokens=args.new_tokens,
        task=args.task,
        method_configs=args.method_configs,
        dtype=args.dtype,
        paper=not args.no_paper,
    )
    bench = run_bench(config, settings, progress=not args.quiet)
    print(bench_text(bench))
    if args.json:
        write_json_atomic(Path(args.json), bench)
        print(f"\nbench file: {args.json}")
    if args.markdown:
        out = Path(args.markdown)
        write_text_atomic(out, bench_markdown(bench, out.parent / "plots"))
        print(f"markdown: {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcit", description="Multimodal continual instruction tuning"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "run", help="train and evaluate one method on a task stream (resumes a run directory)"
    )
    p.add_argument("--config", default=None, help=f"run config YAML (e.g. {DEFAULT_CONFIG})")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--stop-after-stage",
        type=_positive_int,
        default=None,
        metavar="N",
        help="end after N stages are done; the same command without it resumes the rest",
    )
    p.add_argument(
        "--help-config",
        action="store_true",
        help="list every config key (and the method's own): default, meaning, range",
    )
    p.add_argument(
        "overrides", nargs="*", help="key=value overrides, e.g. train.lr=1e-4 method.name=finetune"
    )
    p.set_defaults(func=_cmd_run)

    from mcit.cli_results import add_result_commands

    add_result_commands(sub)  # metrics, score, report, compare

    p = sub.add_parser(
        "pretrain",
        help="rebuild the embedded tiny base with a recipe (resumable), or show the shipped one",
    )
    p.add_argument("--recipe", help="recipe name (default: the shipped base's)")
    p.add_argument("--out", help="folder to build into; without it, the shipped or cached base")
    p.add_argument("--resume", action="store_true", help="continue an unfinished build in --out")
    p.add_argument("--checkpoint-minutes", type=float, default=5.0, help="minutes between saves")
    p.add_argument("--max-minutes", type=float, help="stop the LLaVA stage after this long")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    p.add_argument(
        "--device",
        default="cpu",
        help="where a build's (--out) features and LLaVA stages run: cpu (default) or cuda[:N]",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_pretrain)

    data = sub.add_parser("data", help="generate, validate or inspect a benchmark")
    dsub = data.add_subparsers(dest="data_command", required=True)
    p = dsub.add_parser("generate", help="write an embedded benchmark in the LLaVA/CoIN format")
    p.add_argument("benchmark", help="coin-mini or micl-mini")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--order", default=None, help="comma-separated task names")
    p.add_argument("--size", default=None, help="TRAIN[,TEST] samples per task")
    p.set_defaults(func=_cmd_data_generate)
    p = dsub.add_parser(
        "import", help="write a real benchmark (coin, micl) from a local copy of its datasets"
    )
    p.add_argument("benchmark", help="coin or micl")
    p.add_argument("--root", required=True, help="the datasets' folder (docs/data-format.md)")
    p.add_argument("--out", required=True, help="the benchmark folder to write")
    p.add_argument(
        "--instructions",
        default="original",
        choices=("original", "type2"),
        help="coin: CoIN's instruction set (Instructions_Original, or Instructions_Type2/Diverse)",
    )
    p.add_argument("--images", help="coin: the image root (default: ROOT/cl_dataset)")
    p.set_defaults(func=_cmd_data_import)

    p = dsub.add_parser("validate", help="check a benchmark folder and report every problem")
    p.add_argument("path", help="a benchmark folder, its benchmark.yaml, or a registered name")
    p.add_argument(
        "--config", help="also flag training records longer than this run config's model takes"
    )
    p.add_argument("--lengths", action="store_true", help="the same, with the default config")
    p.set_defaults(func=_cmd_data_validate)
    p = dsub.add_parser("inspect", help="print a few samples of each task")
    p.add_argument("benchmark", nargs="?", default="coin-mini")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-n", type=int, default=3)
    p.set_defaults(func=_cmd_data_inspect)

    p = sub.add_parser(
        "predict",
        help="answer a question about an image, audio clip or video with a trained run "
        "(no task id)",
    )
    p.add_argument("run", help="a run directory, e.g. runs/coin-mini-modalprompt")
    medium = p.add_mutually_exclusive_group(required=True)
    medium.add_argument("--image", help="image file")
    medium.add_argument("--audio", help="audio file (16 kHz; WAV, FLAC, OGG ...)")
    medium.add_argument("--video", help="video file, or a folder of frame images")
    p.add_argument("--question", required=True, help="the instruction, as in the task data")
    p.add_argument("--stage", type=int, default=None, help="after which stage (default: last)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="default: the run's eval")
    p.add_argument("--json", action="store_true", help="print the answer and choices as JSON")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser(
        "bench",
        help="parameters, training and inference cost of every method, side by side, and "
        "inference latency against the number of learned tasks",
    )
    p.add_argument("--methods", default=None, help="comma-separated names or run-config YAMLs")
    p.add_argument("--tasks", default="1,2,4,8,16,32,64", help="learned tasks T for the scaling")
    p.add_argument("--scaling-methods", default=None, help="labels in the scaling (default: all)")
    p.add_argument("--rounds", type=int, default=10, help="timed rounds per measurement")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    p.add_argument("--stage", type=int, default=8, help="measure methods at this stage")
    p.add_argument("--train-batch", type=int, default=None, help="default: train.batch_size")
    p.add_argument("--infer-batch", type=int, default=16, help="the larger inference batch")
    p.add_argument("--new-tokens", type=int, default=None, help="default: eval.max_new_tokens")
    p.add_argument("--task", default=None, help="task whose samples form the batches")
    p.add_argument(
        "--method-configs",
        default=None,
        help="folder of <method>.yaml with each method's args, or 'none' for their defaults "
        "(default: configs/coin-mini for the tiny backbone)",
    )
    p.add_argument("--dtype", default="auto", help="auto (bfloat16 on a GPU), float32, bfloat16")
    p.add_argument("--no-paper", action="store_true", help="skip the LLaVA-1.5-7B accounting")
    p.add_argument("--json", default=None, help="write the bench file (schema: docs/bench.md)")
    p.add_argument("--markdown", default=None, help="also write the Markdown tables and plot")
    p.add_argument("--config", default=None, help="run config YAML: backbone, data, batch")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. model.backbone.name=hf")
    p.set_defaults(func=_cmd_bench)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Like `parse_args`, but `key=value` overrides may also follow an option (`mcit run
    --quiet train.lr=1e-4 --config x.yaml eval.batch_size=8`): argparse ends a positional list
    at the first option and would refuse the rest."""
    args, rest = parser.parse_known_args(argv)
    strays = [a for a in rest if a.startswith("-") or "=" not in a]
    if strays or (rest and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(strays or rest)}")
    if rest:
        args.overrides = [*args.overrides, *rest]
    return args


def main(argv: list[str] | None = None) -> int:
    from mcit.errors import (
        BackboneError,
        CheckpointError,
        ConfigError,
        DataError,
        MatrixError,
        PredictionsFileError,
        ReportError,
    )

    args = parse_args(build_parser(), argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-file "Loading weights" bars drown the run's own
    try:
        return args.func(args)
    except (
        ConfigError,
        DataError,
        BackboneError,
        CheckpointError,
        MatrixError,
        PredictionsFileError,
        ReportError,
    ) as err:
        print(f"mcit {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"mcit {args.command}: interrupted; `mcit run` on the same config resumes after the last finished stage",
            file=sys.stderr,
        )
        return 130
    except BrokenPipeError:
        # The reader of stdout left (`mcit metrics ... | head`): what it read was all it wanted.
        # Point stdout at /dev/null so the interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a process killed by it


if __name__ == "__main__":
    sys.exit(main())
