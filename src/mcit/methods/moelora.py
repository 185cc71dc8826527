"""MoELoRA (CoIN's mixture-of-experts baseline): every targeted linear of the LM gets E LoRA
experts of rank r/E and a router; a dense softmax gate mixes the experts token by token.

One shared set of experts and routers is trained on every task: nothing is created per task
and no task id is used, so it forgets like sequential LoRA unless the gate happens to keep the
tasks apart.

peft has no dense token-gated mixture of LoRA experts (X-LoRA gates with a second forward pass
over the hidden states; Arrow routes among adapters trained beforehand), so the layer is
written here: a wrapper around the frozen linear, its B matrices zero at the start, so the
wrapped model starts equal to the base model.

Specification: docs/methods/moelora.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from mcit.config import AT_LEAST_1, POSITIVE, Bounds, setting
from mcit.errors import ConfigError
from mcit.methods.base import ContinualMethod, MethodArgs, register_method
from mcit.methods.finetune_lora import LLAMA_LINEARS


@dataclass
class MoELoraArgs(MethodArgs):
    r: int = setting(
        128, help="total rank over all experts (CoIN: 128, 8 experts)", bounds=AT_LEAST_1
    )
    alpha: int = setting(256, help="LoRA alpha, as CoIN's", bounds=POSITIVE)
    experts: int = setting(8, help="E; each expert has rank r / E", bounds=AT_LEAST_1)
    dropout: float = setting(
        0.05, help="LoRA dropout", bounds=Bounds(low=0, high=1, high_open=True)
    )
    target_modules: list[str] = setting(
        default_factory=lambda: list(LLAMA_LINEARS), help="the LM linears that get experts"
    )
    train_projector: bool = setting(
        False,
        help="also train the vision-to-LM projector (CoIN: yes)",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.r % self.experts:
            raise ConfigError(
                f"method.args.r: {self.r} is not a multiple of method.args.experts "
                f"({self.experts}); each expert has rank r/E"
            )


class MoELoraLinear(nn.Module):
    """A frozen linear plus E gated LoRA experts:
    `y = Wx + Σ_e softmax(Rx)_e · B_e A_e x · α/r` [CoIN's MoELoRA]."""

    def __init__(self, base_layer: nn.Linear, r: int, alpha: int, experts: int, dropout: float):
        super().__init__()
        self.base_layer = base_layer
        self.experts = experts
        self.expert_rank = r // experts
        self.scaling = alpha / r  # α/r with r the total rank, as in the formula above
        d_in, d_out = base_layer.in_features, base_layer.out_features
        # Adapter weights in float32 even on a bf16 base, as peft keeps its LoRA weights.
        kwargs = {"device": base_layer.weight.device, "dtype": torch.float32}
        self.lora_A = nn.Parameter(torch.empty(experts, self.expert_rank, d_in, **kwargs))
        self.lora_B = nn.Parameter(torch.zeros(experts, d_out, self.expert_rank, **kwargs))
        self.router = nn.Linear(d_in, experts, bias=False, **kwargs)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        for expert in range(experts):
            # Each A_e as peft initialises a LoRA A (kaiming-uniform over its d_in inputs).
            nn.init.kaiming_uniform_(self.lora_A.data[expert], a=math.sqrt(5))

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Dense token-level gate softmax(Rx): (..., E), summing to one over the experts."""
        return torch.softmax(self.router(x.to(self.router.weight.dtype)), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        h = self.dropout(x).to(self.lora_A.dtype)
        low = torch.einsum("...i,eri->...er", h, self.lora_A)  # A_e x for every expert e
        gated = low * self.gate(x).unsqueeze(-1)  # softmax(Rx)_e · A_e x
        delta = torch.einsum("...er,eor->...o", gated, self.lora_B)  # Σ_e B_e (...)
        return result + (delta * self.scaling).to(result.dtype)


def inject_moelora(language_model: nn.Module, args: MoELoraArgs) -> list[MoELoraLinear]:
    """Wrap every linear of the LM whose attribute name is in `args.target_modules`, in place."""
    targets = [
        (name, module)
        for name, module in language_model.named_modules()
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in args.target_modules
    ]
    if not targets:
        raise ConfigError(
            f"method.args.target_modules: no linear layer of the language model is named any of "
            f"{list(args.target_modules)}"
        )
    wrapped = []
    for name, module in targets:
        parent_name, _, attribute = name.rpartition(".")
        parent = language_model.get_submodule(parent_name) if parent_name else language_model
        layer = MoELoraLinear(module, args.r, args.alpha, args.experts, args.dropout)
        setattr(parent, attribute, layer)
        wrapped.append(layer)
    return wrapped


@register_method
class MoELora(ContinualMethod):
    name = "moelora"
    args_class = MoELoraArgs
    args: MoELoraArgs

    def attach(self) -> None:
        # One shared set of experts and routers, trained on every task (CoIN's MoELoRA).
        inject_moelora(self.backbone.language_model, self.args)
        if self.args.train_projector:
            self.backbone.train_projector()
