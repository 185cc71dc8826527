"""O-LoRA (Wang et al., 2023, "Orthogonal Subspace Learning for Language Model Continual
Learning"): a new LoRA block per task, learned in a subspace orthogonal to the old blocks'.

Each task gets its own peft LoRA adapter on the LM's linears; all blocks are active at once
(peft sums the outputs of the active adapters), only the current one trains, and the loss
pushes the current A towards orthogonality with every old A. Inference sums all blocks and
needs no task id; parameters grow by one block per task.

Specification: docs/methods/o-lora.md.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from peft.tuners.lora import LoraLayer
from peft.tuners.tuners_utils import set_adapter

from mcit.config import NON_NEGATIVE, setting
from mcit.data.collate import Batch
from mcit.data.sample import Task
from mcit.methods.base import ContinualMethod, LossOutput, register_method
from mcit.methods.finetune_lora import LoraArgs, inject_lora


@dataclass
class OLoraArgs(LoraArgs):
    # r, alpha, dropout, target_modules: of each task's block (CoIN's LoRA budget by default).
    orthogonal_weight: float = setting(
        0.05, help="λ1 of O-LoRA's orthogonality loss (the paper's 0.05)", bounds=NON_NEGATIVE
    )


def block_name(task_id: int) -> str:
    return f"task{task_id}"


@register_method
class OLora(ContinualMethod):
    name = "o-lora"
    args_class = OLoraArgs
    args: OLoraArgs

    def attach(self) -> None:
        # Blocks are created per task, in `begin_task`.
        self.blocks: list[str] = []
        self._lora_layers: list[LoraLayer] = []

    def begin_task(self, task_id: int, task: Task) -> None:
        language_model = self.backbone.language_model
        for t in range(len(self.blocks), task_id + 1):
            with warnings.catch_warnings():
                # peft warns that the model will hold several adapters: that is the design.
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                inject_lora(language_model, self.args, adapter_name=block_name(t))
            self.blocks.append(block_name(t))
        # All blocks active: each LoRA layer adds Σ_s B_s A_s x · α/r (inference sums all blocks).
        set_adapter(language_model, list(self.blocks))
        self._lora_layers = [m for m in language_model.modules() if isinstance(m, LoraLayer)]
        current = self.blocks[-1]
        for layer in self._lora_layers:  # set_adapter made every active block trainable
            for block in self.blocks:
                layer.lora_A[block].requires_grad_(block == current)
                layer.lora_B[block].requires_grad_(block == current)

    def _owns(self, name: str) -> bool:
        return ".lora_A." in name or ".lora_B." in name  # the frozen blocks of earlier tasks

    def orthogonality(self) -> torch.Tensor:
        """Σ_layers Σ_{s<t} ‖A_t A_sᵀ‖₁: O-LoRA's orthogonality loss, with the entrywise L1 norm
        of its code. peft stores A as (r, d_in), so A_t A_sᵀ is r × r."""
        current = self.blocks[-1]
        total = torch.zeros((), device=self.backbone.device)
        for layer in self._lora_layers:
            a_t = layer.lora_A[current].weight
            for old in self.blocks[:-1]:
                total = total + (a_t @ layer.lora_A[old].weight.T).abs().sum()  # ‖A_t A_sᵀ‖₁
        return total

    def training_loss(self, batch: Batch) -> LossOutput:
        lm = self.backbone.lm_loss(self.lm_logits(batch), batch.labels)
        orthogonal = self.orthogonality()
        loss = lm + self.args.orthogonal_weight * orthogonal  # L + λ1 Σ ‖A_t A_sᵀ‖₁
        return LossOutput(loss, {"lm": lm.item(), "orthogonal": orthogonal.item()})
