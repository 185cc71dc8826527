"""EWC (Kirkpatrick et al., 2017, "Overcoming catastrophic forgetting in neural networks") on
sequential LoRA: a quadratic penalty holds each adapter weight near its value after the last
task, in proportion to its diagonal Fisher information, accumulated over the finished tasks.

The Fisher is the empirical one: squared gradients of the LM loss on the task's own training
samples (ground-truth answers), computed in `end_task` over `fisher_batches` batches of
`fisher_batch_size` samples. With batches of one sample it is the per-sample empirical Fisher;
larger batches square a mean gradient and so shrink it by about the batch size, which λ absorbs.

Specification: docs/methods/ewc.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mcit.config import AT_LEAST_1, NON_NEGATIVE, setting
from mcit.data.collate import Batch, Collator
from mcit.data.sample import Sample, Task
from mcit.methods.base import LossOutput, register_method
from mcit.methods.finetune_lora import FinetuneLora, LoraArgs


@dataclass
class EwcArgs(LoraArgs):
    ewc_weight: float = setting(
        5000.0,
        help="λ of the penalty; tune on a validation split of the first tasks",
        bounds=NON_NEGATIVE,
    )
    fisher_batches: int = setting(
        64, help="batches of the finished task's training samples for F", bounds=AT_LEAST_1
    )
    fisher_batch_size: int = setting(
        1, help="samples per Fisher batch (1: the per-sample empirical Fisher)", bounds=AT_LEAST_1
    )


class ParameterShadow(nn.Module):
    """One buffer per named parameter, same shape (buffer names cannot hold dots)."""

    def __init__(self, params: dict[str, nn.Parameter]):
        super().__init__()
        for name, p in params.items():
            self.register_buffer(self.key(name), torch.zeros_like(p, dtype=torch.float32))

    @staticmethod
    def key(name: str) -> str:
        return name.replace(".", "__")

    def of(self, name: str) -> torch.Tensor:
        return getattr(self, self.key(name))


@register_method
class Ewc(FinetuneLora):
    name = "ewc"
    args_class = EwcArgs
    args: EwcArgs

    def attach(self) -> None:
        super().attach()
        weights = self._weights()
        # F (summed over finished tasks) and θ* (the weights after the last one): buffers, so
        # `method_state` saves them with the adapter and a resumed run gets them back.
        self.fisher = ParameterShadow(weights)
        self.anchor = ParameterShadow(weights)

    def _weights(self) -> dict[str, nn.Parameter]:
        """The weights EWC protects: the ones that train (the LoRA adapter)."""
        return {name: p for name, p in self.named_parameters() if p.requires_grad}

    def penalty(self) -> torch.Tensor:
        """Σ_i F_i (θ_i − θ*_i)², without the λ/2."""
        total = torch.zeros((), device=self.backbone.device)
        for name, p in self._weights().items():
            fisher, anchor = self.fisher.of(name), self.anchor.of(name)
            total = total + (fisher * (p.float() - anchor) ** 2).sum()
        return total

    def training_loss(self, batch: Batch) -> LossOutput:
        lm = self.backbone.lm_loss(self.lm_logits(batch), batch.labels)
        penalty = self.penalty()
        loss = lm + self.args.ewc_weight / 2 * penalty  # L + (λ/2) Σ F_i (θ_i − θ*_i)²
        return LossOutput(loss, {"lm": lm.item(), "ewc": penalty.item()})

    def end_task(self, task_id: int, task: Task, train_samples: list[Sample]) -> None:
        fisher = self.task_fisher(train_samples)
        with torch.no_grad():
            for name, p in self._weights().items():
                self.fisher.of(name).add_(fisher[name])  # F ← F + F_t: accumulated over tasks
                self.anchor.of(name).copy_(p)  # θ* ← θ after this task
        super().end_task(task_id, task, train_samples)

    def task_fisher(self, samples: list[Sample]) -> dict[str, torch.Tensor]:
        """Diagonal empirical Fisher F_i = E[(∂L/∂θ_i)²] over a seeded subset of `samples`."""
        weights = self._weights()
        size = self.args.fisher_batch_size
        n = min(len(samples), self.args.fisher_batches * size)
        # Seeded by the stage's seed: the same subset on every process and on a resumed run.
        generator = torch.Generator().manual_seed(torch.initial_seed())
        order = torch.randperm(len(samples), generator=generator)[:n].tolist()
        chunks = [[samples[i] for i in order[k : k + size]] for k in range(0, n, size)]
        sums = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in weights.items()}
        collate = Collator(self.backbone)
        was_training = self.training
        self.eval()  # no dropout: the Fisher of the model as it stands
        for chunk in chunks:
            batch = collate(chunk).to(self.backbone.device)
            loss = self.backbone.lm_loss(self.lm_logits(batch), batch.labels)
            # autograd.grad, not backward: no .grad is touched and no DDP hook fires.
            grads = torch.autograd.grad(loss, list(weights.values()), allow_unused=True)
            for name, grad in zip(weights, grads, strict=True):
                if grad is not None:
                    sums[name] += grad.detach().float() ** 2
        self.train(was_training)
        return {name: total / max(1, len(chunks)) for name, total in sums.items()}
