"""Sequential LoRA fine-tuning (CoIN's baseline): one LoRA on every linear layer of the LM,
continued task after task. Built on peft; only the LoRA weights train.

Specification: docs/methods/finetune-lora.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.tuners_utils import cast_adapter_dtype

from mcit.config import AT_LEAST_1, POSITIVE, Bounds, setting
from mcit.methods.base import ContinualMethod, MethodArgs, register_method

# Every linear layer of a Llama-style decoder (CoIN: all LM linear layers).
LLAMA_LINEARS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LoraArgs(MethodArgs):
    r: int = setting(128, help="LoRA rank (CoIN: 128)", bounds=AT_LEAST_1)
    alpha: int = setting(
        256, help="LoRA alpha; the update is scaled by alpha / r (CoIN: 256)", bounds=POSITIVE
    )
    dropout: float = setting(
        0.05, help="LoRA dropout", bounds=Bounds(low=0, high=1, high_open=True)
    )
    target_modules: list[str] = setting(
        default_factory=lambda: list(LLAMA_LINEARS), help="the LM linears that get LoRA"
    )


@dataclass
class FinetuneLoraArgs(LoraArgs):
    train_projector: bool = setting(
        False,
        help="also train the vision-to-LM projector (CoIN: yes)",
    )


def inject_lora(language_model, args: LoraArgs, adapter_name: str = "default") -> None:
    """Add peft LoRA layers to the LM's targeted linears, in place; only they require grad."""
    config = LoraConfig(
        r=args.r,
        lora_alpha=args.alpha,
        lora_dropout=args.dropout,
        target_modules=list(args.target_modules),
        bias="none",
    )
    inject_adapter_in_model(config, language_model, adapter_name=adapter_name)
    # float32 LoRA weights on a bf16/fp16 LM (peft's own `autocast_adapter_dtype`, which
    # `inject_adapter_in_model` does not apply): half-precision ones lose most AdamW steps.
    cast_adapter_dtype(language_model, adapter_name=adapter_name)


@register_method
class FinetuneLora(ContinualMethod):
    name = "finetune-lora"
    args_class = FinetuneLoraArgs
    args: LoraArgs

    def attach(self) -> None:
        inject_lora(self.backbone.language_model, self.args)
        # Only finetune-lora's own args have the switch: the methods built on it (LwF, EWC,
        # replay) keep the projector frozen, as their snapshots and penalties assume.
        if isinstance(self.args, FinetuneLoraArgs) and self.args.train_projector:
            self.backbone.train_projector()
