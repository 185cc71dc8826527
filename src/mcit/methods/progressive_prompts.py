"""Progressive Prompts (Razdaibiedina et al., ICLR 2023, "Progressive Prompts: Continual
Learning for Language Models"), as the paper states it.

Rehearsal-free, the whole LMM frozen. Task t learns a new soft prompt `P_t ∈ R^{L×d}`, trained
while every earlier prompt is prefixed, frozen: the input is `[BOS; P_1; …; P_t; text]`, oldest
first and the newest nearest the text, spliced in after BOS as ModalPrompt's prompts are
(`mcit.models.prompting`). After task t, `P_t` never changes again: it stops requiring grad and
the trainer builds each stage's optimizer from what requires grad only; each prompt is its own
`nn.Parameter`, so an old prompt is a tensor the optimizer never sees (bit-identical after every
later task). Inference prefixes all T·L learned tokens and needs no task id, so its cost grows
with the number of tasks T (ModalPrompt's and L2P's prefixes do not).

Init: each row a copy of the embedding of a random real, non-special token (as the authors' T5
code copies random vocabulary embeddings; mcit shares ModalPrompt's init). Left out: the paper's
residual MLP reparameterisation of the prompt (its BERT set-up, not its T5 one).

Specification: docs/methods/progressive-prompts.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mcit.config import AT_LEAST_1, setting
from mcit.data.collate import Batch
from mcit.data.sample import Task
from mcit.methods.base import ContinualMethod, LossOutput, MethodArgs, register_method
from mcit.models.prompting import PerTaskPrompts, prompted_inputs


@dataclass
class ProgressivePromptsArgs(MethodArgs):
    prompt_length: int = setting(10, help="L, new prompt tokens per task", bounds=AT_LEAST_1)


@register_method
class ProgressivePrompts(PerTaskPrompts, ContinualMethod):
    name = "progressive-prompts"
    args_class = ProgressivePromptsArgs
    args: ProgressivePromptsArgs

    def attach(self) -> None:
        self._init_task_prompts()

    # ------------------------------------------------------------------ lifecycle
    def begin_task(self, task_id: int, task: Task) -> None:
        self._new_task_prompt(task_id, self.args.prompt_length)

    # ------------------------------------------------------------------ prefix
    def prefix(self, batch_size: int) -> torch.Tensor:
        """[P_1; …; P_T] for every sample, oldest first: [B, T·L, d]. The same for every sample
        (no task id, no selection)."""
        every = torch.cat(list(self.prompts))  # [T·L, d]
        return every[None].expand(batch_size, -1, -1)

    def prompted_inputs(
        self, batch: Batch
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Input embeddings, attention mask and labels with every learned prompt after BOS."""
        return prompted_inputs(self.backbone, batch, self.prefix(len(batch)))

    # ------------------------------------------------------------------ training, inference
    def training_loss(self, batch: Batch) -> LossOutput:
        if not self.num_tasks:
            raise ValueError(f"{self.name}: training_loss before begin_task")
        # Task t trains P_t behind the frozen P_1..P_{t−1}: the LM loss alone [paper].
        embeds, mask, labels = self.prompted_inputs(batch)
        loss = self.backbone.lm_loss(self.backbone.logits(embeds, mask), labels)
        return LossOutput(loss, {"lm": loss.item()})

    @torch.no_grad()
    def generate(self, batch: Batch, max_new_tokens: int = 16) -> list[str]:
        if not self.num_tasks:
            return super().generate(batch, max_new_tokens=max_new_tokens)
        embeds, mask, _ = self.prompted_inputs(batch)
        return self.backbone.generate(embeds, mask, max_new_tokens=max_new_tokens)
