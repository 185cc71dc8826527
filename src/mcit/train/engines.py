"""The distributed engine a run is under, and what each asks of mcit's training loop.

`accelerate launch --config_file configs/accelerate/<engine>.yaml` decides the engine; the
Accelerator reads it from the environment. mcit supports:

- no engine (one process) and DDP (`ddp.yaml`, or torchrun on CPUs): every process holds the
  whole model, the optimizer is mcit's own AdamW;
- DeepSpeed ZeRO stage 1 or 2 (`deepspeed-zero2.yaml`): the DeepSpeed engine owns the optimizer
  step, the accumulation and the clipping; the weights stay whole on every process, so
  evaluation, saving and the next stage see them as under DDP. Its bf16/fp16 modes are refused:
  they cast every weight in place; the frozen model's dtype is `model.backbone.dtype`, and what
  trains is float32 under every engine.

Refused, before any model is loaded: FSDP and ZeRO stage 3, which shard the weights
themselves. mcit's evaluation gives each process its own share of the test samples to generate
for, and a method's state is read from and written into whole weights between stages; with
sharded weights every forward pass is a collective that all processes must make in step.
"""

from __future__ import annotations

from accelerate import Accelerator
from accelerate.utils import DistributedType

from mcit.config import TrainConfig
from mcit.errors import ConfigError
from mcit.methods.base import ContinualMethod

SHARDED_WEIGHTS_HINT = (
    "use configs/accelerate/deepspeed-zero2.yaml (optimizer states and gradients sharded, the "
    "weights whole) or configs/accelerate/ddp.yaml"
)
# Hooks that read gradients or write weights outside the loss: under DeepSpeed the engine
# steps inside `backward` and keeps float32 master weights of its own, so such a hook would
# act at the wrong time or be overwritten at the next step.
WEIGHT_HOOKS = ("before_optimizer_step", "after_optimizer_step", "end_epoch")


def engine_name(accelerator: Accelerator) -> str:
    """'deepspeed', 'fsdp', 'ddp' (several processes) or 'single'."""
    kind = accelerator.distributed_type
    if kind == DistributedType.DEEPSPEED:
        return "deepspeed"
    if kind == DistributedType.FSDP:
        return "fsdp"
    return "ddp" if accelerator.num_processes > 1 else "single"


def zero_stage(accelerator: Accelerator) -> int | None:
    plugin = accelerator.state.deepspeed_plugin
    return None if plugin is None else int(plugin.zero_stage)


def check_engine(accelerator: Accelerator) -> None:
    """Refuse an engine mcit cannot run, naming it and what to launch instead."""
    engine = engine_name(accelerator)
    if engine == "fsdp":
        raise ConfigError(
            "accelerate launch: FSDP shards the model's weights, which mcit's per-process "
            f"evaluation and per-stage method state do not support; {SHARDED_WEIGHTS_HINT}"
        )
    if engine == "deepspeed" and (zero_stage(accelerator) or 0) >= 3:
        raise ConfigError(
            "accelerate launch: DeepSpeed ZeRO stage 3 shards the model's weights, which mcit's "
            f"per-process evaluation and per-stage method state do not support; "
            f"{SHARDED_WEIGHTS_HINT}"
        )


def check_method_under_engine(accelerator: Accelerator, method: type[ContinualMethod]) -> None:
    """Under DeepSpeed, refuse a method (class) whose hooks touch gradients or weights."""
    if engine_name(accelerator) != "deepspeed":
        return
    hooks = [
        hook for hook in WEIGHT_HOOKS if getattr(method, hook) is not getattr(ContinualMethod, hook)
    ]
    if hooks:
        raise ConfigError(
            f"method '{method.name}' changes gradients or weights outside its loss "
            f"({', '.join(hooks)}), which the DeepSpeed engine's own optimizer step would undo; "
            "run it under DDP (configs/accelerate/ddp.yaml)"
        )


def configure_deepspeed(accelerator: Accelerator, config: TrainConfig) -> None:
    """Fill the DeepSpeed config's "auto" values from the run config, before `prepare`, and
    refuse a fixed value that contradicts it: the run config stays the one source of truth
    (and results.json records it)."""
    plugin = accelerator.state.deepspeed_plugin
    for mode in ("bf16", "fp16"):
        enabled = plugin.deepspeed_config.get(mode, {}).get("enabled", False)
        if enabled == "auto":
            plugin.deepspeed_config[mode]["enabled"] = False
        elif enabled:
            # The engine would cast every weight the method owns (adapters, prompts, an old
            # task's frozen state) to half precision in place, keeping float32 copies only
            # inside itself, which ends with the stage.
            raise ConfigError(
                f"DeepSpeed config sets {mode}.enabled = true, which casts the whole model to "
                f"{mode} in place; set it to false: the frozen model's dtype comes from "
                "model.backbone.dtype, and what trains stays float32"
            )
    # DeepSpeed field: (run config key, its value).
    wanted = {
        "train_micro_batch_size_per_gpu": ("train.batch_size", config.batch_size),
        "gradient_accumulation_steps": ("train.grad_accum", config.grad_accum),
        "gradient_clipping": ("train.max_grad_norm", config.max_grad_norm),
    }
    for field, (key, value) in wanted.items():
        current = plugin.deepspeed_config.get(field, "auto")
        if current == "auto":
            plugin.deepspeed_config[field] = value
        elif float(current) != float(value):
            raise ConfigError(
                f"DeepSpeed config sets {field} = {current} but the run has "
                f'{key} = {value}; set it to "auto" (mcit fills it) or make them agree'
            )
    total = config.batch_size * config.grad_accum * accelerator.num_processes
    current = plugin.deepspeed_config.get("train_batch_size", "auto")
    if current != "auto" and int(current) != total:
        raise ConfigError(
            f"DeepSpeed config sets train_batch_size = {current} but the run gives "
            f"{total} (train.batch_size × train.grad_accum × {accelerator.num_processes} processes)"
        )
    plugin.deepspeed_config["train_batch_size"] = total
