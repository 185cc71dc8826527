"""LwF (Li & Hoiem, 2016, "Learning without Forgetting") on sequential LoRA: while learning a
task, the model's answer-token distributions on that task's inputs are pulled towards those of
the model as the stage began (the previous stage's model).

The old model is not a copy of the LMM: it is a snapshot of the LoRA weights, swapped in for
one extra forward pass without gradient, so its cost is one adapter's memory at any scale.

Specification: docs/methods/lwf.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from mcit.config import NON_NEGATIVE, POSITIVE, setting
from mcit.data.collate import IGNORE, Batch
from mcit.data.sample import Task
from mcit.methods.base import LossOutput, register_method
from mcit.methods.finetune_lora import FinetuneLora, LoraArgs


@dataclass
class LwfArgs(LoraArgs):
    distill_weight: float = setting(
        1.0, help="λ (LwF: λ_o = 1); tune on a validation split of early tasks", bounds=NON_NEGATIVE
    )
    temperature: float = setting(2.0, help="τ of the distillation (LwF: T = 2)", bounds=POSITIVE)


def distillation_loss(
    old_logits: torch.Tensor, new_logits: torch.Tensor, labels: torch.Tensor, temperature: float
) -> torch.Tensor:
    """τ² KL(p_old ‖ p_new), p = softmax(logits / τ), averaged over the answer positions only.

    The logits at position i predict token i + 1 (as in `Backbone.lm_loss`), so a position
    counts when the label of the next token is an answer token (not -100).
    """
    answer = labels[:, 1:] != IGNORE
    if not answer.any():
        return new_logits.sum() * 0.0
    old = old_logits[:, :-1][answer].float() / temperature
    new = new_logits[:, :-1][answer].float() / temperature
    # kl_div(log q, log p, log_target) = Σ p (log p − log q) = KL(p_old ‖ p_new); batchmean
    # divides by the number of answer tokens.
    kl = F.kl_div(
        F.log_softmax(new, dim=-1),
        F.log_softmax(old, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
    return temperature**2 * kl


@register_method
class Lwf(FinetuneLora):
    name = "lwf"
    args_class = LwfArgs
    args: LwfArgs

    def attach(self) -> None:
        super().attach()
        self._old_adapter: dict[str, torch.Tensor] | None = None

    def begin_task(self, task_id: int, task: Task) -> None:
        # The old model is the previous stage's: the adapter as this stage begins. Taken here
        # rather than in end_task, it needs no saving: a resumed run loads the finished stage's
        # weights before the next stage begins.
        super().begin_task(task_id, task)
        self._old_adapter = None
        if task_id > 0:
            self._old_adapter = {
                name: p.detach().clone() for name, p in self.named_parameters() if p.requires_grad
            }

    @contextlib.contextmanager
    def _as_old_model(self) -> Iterator[None]:
        """The old adapter weights in place of the current ones, dropout off, no gradient."""
        was_training = self.training
        self.eval()
        self._swap_adapter()
        try:
            with torch.no_grad():
                yield
        finally:
            self._swap_adapter()
            self.train(was_training)

    def _swap_adapter(self) -> None:
        """Exchange the live adapter weights with the snapshot, one tensor at a time (the extra
        memory is one LoRA matrix, not a second adapter)."""
        assert self._old_adapter is not None
        params = dict(self.named_parameters())
        with torch.no_grad():
            for name, stored in self._old_adapter.items():
                live = params[name]
                held = live.detach().clone()
                live.copy_(stored)
                stored.copy_(held)

    def training_loss(self, batch: Batch) -> LossOutput:
        old_logits = None
        if self._old_adapter is not None:
            # Before the new forward pass: nothing saved for backward sees the swapped weights.
            with self._as_old_model():
                old_logits = self.lm_logits(batch)
        logits = self.lm_logits(batch)
        lm = self.backbone.lm_loss(logits, batch.labels)
        if old_logits is None:
            return LossOutput(lm, {"lm": lm.item(), "distill": 0.0})
        distill = distillation_loss(old_logits, logits, batch.labels, self.args.temperature)
        loss = lm + self.args.distill_weight * distill  # L + λ τ² KL(p_old ‖ p_new)
        return LossOutput(loss, {"lm": lm.item(), "distill": distill.item()})
