"""Sequential full fine-tuning: LM and projector trained task after task (vision tower frozen).

The lower reference for forgetting: the same weights are continued on every task with no
protection of what was learned before.

Specification: docs/methods/finetune.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcit.config import setting
from mcit.methods.base import ContinualMethod, MethodArgs, register_method


@dataclass
class FinetuneArgs(MethodArgs):
    train_projector: bool = setting(True, help="train the vision-to-LM projector")
    train_lm: bool = setting(True, help="train the language model's layers")
    train_lm_head: bool = setting(True, help="train the output head")


@register_method
class Finetune(ContinualMethod):
    name = "finetune"
    args_class = FinetuneArgs
    args: FinetuneArgs

    def attach(self) -> None:
        if self.args.train_projector:
            self.backbone.train_projector()
        if self.args.train_lm:
            self.backbone.language_model.requires_grad_(True)
        if self.args.train_lm_head:
            self.backbone.model.lm_head.requires_grad_(True)
