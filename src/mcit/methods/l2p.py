"""L2P (Wang et al., CVPR 2022, "Learning to Prompt for Continual Learning"), as the paper
states it, on a frozen LMM ([spec]: mcit's own choice where the paper is silent).

Rehearsal-free, no task id anywhere, the whole LMM frozen. One pool shared by every task:
M prompts `P_m ∈ R^{L_p×d}` with learnable keys `k_m ∈ R^c` (c = CLIP feature width), all
trained on every task [paper §4]. The pool is one `[M, L_p, d]` parameter and the keys one
`[M, c]` parameter, so every trainable tensor takes part in every step (DDP needs that) while the
gradient of an unselected prompt or key is exactly zero.

- Query [paper Eq. 3]: `q(x)` = the frozen CLIP image feature of the sample
  (`mcit.models.guidance`, the feature ModalPrompt uses). [spec] A sample without an image
  queries with its instruction's CLIP text feature, projected into the joint image–text space.
- Selection [paper Eq. 3]: the N keys nearest `q(x)` by cosine, `γ(q, k) = 1 − cos(q, k)`;
  per sample, so the answer never depends on the batch (L2P's optional batch-wise majority vote
  would break that and is left out). Their prompts go right after BOS (`mcit.models.prompting`),
  most similar first as in [code]: N·L_p tokens whatever the number of tasks.
- Loss [paper Eq. 5]: `L = L_LM + λ · mean_{b, n} (1 − cos(q(x_b), k_{s_bn}))`, the mean over
  the batch and the N selected keys (λ = `key_loss_weight`); the selection is an index, no
  gradient through it, and the query is frozen, so the key term moves the selected keys only.
- Init: prompt rows are copies of random real-token embeddings (ModalPrompt's init), keys
  uniform in [−1, 1] [code].
- Optional, off by default (`diversity`) [paper Eq. 4]: while training task t > 1, select the N
  prompts minimising `γ(q, k_m) · h_m`, with `h_m` the normalised frequency with which prompt m
  was selected during the training of tasks 1..t−1; inference always uses Eq. 3. The counts
  live in the buffer `usage` (saved with the state; under DDP, rank 0's counts, which DDP
  broadcasts with the other buffers).

Specification: docs/methods/l2p.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from mcit.config import AT_LEAST_1, NON_NEGATIVE, setting
from mcit.data.collate import Batch
from mcit.data.sample import Sample, Task
from mcit.errors import ConfigError
from mcit.evaluation.analysis import StageAnalysis, analysis_matrix
from mcit.methods.base import ContinualMethod, LossOutput, MethodArgs, register_method
from mcit.models.guidance import backbone_guidance
from mcit.models.prompting import prompted_inputs, random_token_rows, real_token_ids


@dataclass
class L2PArgs(MethodArgs):
    pool_size: int = setting(10, help="M prompts in the shared pool [paper]", bounds=AT_LEAST_1)
    prompt_length: int = setting(5, help="L_p tokens per pool prompt [paper]", bounds=AT_LEAST_1)
    top_n: int = setting(3, help="N prompts selected per sample (Eq. 3)", bounds=AT_LEAST_1)
    key_loss_weight: float = setting(
        1.0, help="λ of Eq. 5 (the key-pull loss)", bounds=NON_NEGATIVE
    )
    diversity: bool = setting(False, help="Eq. 4: frequency-penalised selection while training")
    guidance_cache_size: int = setting(
        200_000, help="frozen CLIP features kept in memory", bounds=AT_LEAST_1
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.top_n > self.pool_size:
            raise ConfigError(
                f"method.args.top_n: {self.top_n} must not exceed pool_size ({self.pool_size})"
            )


@register_method
class L2P(ContinualMethod):
    name = "l2p"
    args_class = L2PArgs
    args: L2PArgs

    def attach(self) -> None:
        # Projected text features: the fallback query must live in the image features' space.
        self.guidance = backbone_guidance(
            self.backbone, "L2P", "query features", True, self.args.guidance_cache_size
        )
        m, length = self.args.pool_size, self.args.prompt_length
        rows = random_token_rows(
            self.backbone, real_token_ids(self.backbone, self.name), m * length
        )
        self.prompts = nn.Parameter(rows.reshape(m, length, -1))  # [M, L_p, d]
        self.keys = nn.Parameter(torch.empty(m, self.guidance.dim).uniform_(-1.0, 1.0))  # [M, c]
        # With λ = 0 the keys get no gradient: keep them out of the optimizer (and DDP).
        self.keys.requires_grad_(self.args.key_loss_weight > 0)
        # Selections per prompt while training the finished tasks (h of Eq. 4, unnormalised).
        self.register_buffer("usage", torch.zeros(m, dtype=torch.long))
        self._usage_now = torch.zeros(m, dtype=torch.long)  # the current task's, on the CPU

    # ------------------------------------------------------------------ lifecycle
    def begin_task(self, task_id: int, task: Task) -> None:
        self._usage_now.zero_()

    def end_task(self, task_id: int, task: Task, train_samples: list[Sample]) -> None:
        self.usage += self._usage_now.to(self.usage.device)
        self._usage_now.zero_()
        super().end_task(task_id, task, train_samples)

    # ------------------------------------------------------------------ query, selection
    def query(self, samples: list[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
        """q(x) [B, c]: the frozen CLIP image feature, or [spec] the projected text feature of
        the instruction for a sample without an image; and which samples had an image [B]."""
        all_images = all("image" in s.media for s in samples)
        feats = self.guidance.features(
            samples, self.backbone.device, image=True, text=not all_images
        )
        q = feats.image
        if feats.text is not None:
            q = torch.where(feats.has_image[:, None], feats.image, feats.text)
        return q, feats.has_image

    def key_cosine(self, q: torch.Tensor) -> torch.Tensor:
        """cos(q(x), k_m) for every sample and key: [B, M] (γ = 1 − cos, Eq. 3)."""
        return F.normalize(q.float(), dim=-1) @ F.normalize(self.keys, dim=-1).T

    def select(self, cosine: torch.Tensor, penalised: bool = False) -> torch.Tensor:
        """The N selected prompts per sample [B, N], the first nearest BOS. Eq. 3: the N largest
        cosines, most similar first. `penalised` (Eq. 4, training only): the N smallest
        γ·h, ties (e.g. prompts never used, h = 0) broken by γ, then by index."""
        cosine = cosine.detach()
        n = self.args.top_n
        if not penalised:
            return cosine.topk(n, dim=1).indices
        distance = 1 - cosine
        h = (self.usage.float() / self.usage.sum()).to(distance.device)
        by_distance = distance.argsort(dim=1, stable=True)
        score = (distance * h).gather(1, by_distance)
        return by_distance.gather(1, score.argsort(dim=1, stable=True)[:, :n])

    def _penalised(self) -> bool:
        """Eq. 4 applies while training, once earlier tasks have selection counts."""
        return self.args.diversity and self.training and bool(self.usage.sum() > 0)

    def prefix(self, selected: torch.Tensor) -> torch.Tensor:
        """The selected prompts, concatenated per sample: [B, N·L_p, d]."""
        chosen = self.prompts[selected.to(self.prompts.device)]  # [B, N, L_p, d]
        return chosen.reshape(selected.shape[0], -1, self.prompts.shape[-1])

    # ------------------------------------------------------------------ training
    def training_loss(self, batch: Batch) -> LossOutput:
        q, _ = self.query(batch.samples)
        cosine = self.key_cosine(q)  # [B, M], differentiable in the keys only
        selected = self.select(cosine, penalised=self._penalised())
        if self.training:
            self._usage_now += torch.bincount(
                selected.flatten().cpu(), minlength=self.args.pool_size
            )
        embeds, mask, labels = prompted_inputs(self.backbone, batch, self.prefix(selected))
        lm = self.backbone.lm_loss(self.backbone.logits(embeds, mask), labels)
        # Eq. 5: λ Σ_{s ∈ K_x} γ(q(x), k_s), here the mean over the batch and the N selected.
        key = 1 - cosine.gather(1, selected).mean()
        loss = lm + self.args.key_loss_weight * key
        return LossOutput(loss, {"lm": lm.item(), "key": key.item()})

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def selection(self, samples: list[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference (Eq. 3): the selected prompts [B, N] and every key's cosine [B, M]. Reads
        the samples' image (or instruction) only."""
        q, _ = self.query(samples)
        cosine = self.key_cosine(q)
        return self.select(cosine), cosine

    @torch.no_grad()
    def generate(self, batch: Batch, max_new_tokens: int = 16) -> list[str]:
        selected, _ = self.selection(batch.samples)
        embeds, mask, _ = prompted_inputs(self.backbone, batch, self.prefix(selected))
        return self.backbone.generate(embeds, mask, max_new_tokens=max_new_tokens)

    @torch.no_grad()
    def explain(self, batch: Batch) -> list[dict[str, Any]]:
        """Per sample: the selected pool prompts (1-based, most similar first) with their key
        cosines, the cosine to every key, and which feature was the query."""
        selected, cosine = self.selection(batch.samples)
        _, has_image = self.query(batch.samples)
        return [
            {
                "query": "image" if has_image[b] else "instruction (no image)",
                "selected": [
                    {"prompt": int(m) + 1, "cosine": float(cosine[b, m])} for m in selected[b]
                ],
                "key_cosines": [float(c) for c in cosine[b]],
            }
            for b in range(len(batch))
        ]

    # ------------------------------------------------------------------ analyses
    @torch.no_grad()
    def analyses(
        self, test_sets: dict[str, list[Sample]], learned_tasks: list[str]
    ) -> StageAnalysis:
        """The paper's prompt-selection histogram per task: the share of each task's test
        samples whose N selected prompts (Eq. 3) include each pool prompt."""
        if not test_sets:
            return StageAnalysis()
        shares: list[list[float | None]] = []
        for samples in test_sets.values():
            if not samples:
                shares.append([None] * self.args.pool_size)
                continue
            chosen = torch.cat(
                [
                    self.selection(samples[start : start + 256])[0]
                    for start in range(0, len(samples), 256)
                ]
            ).cpu()
            hits = F.one_hot(chosen, self.args.pool_size).amax(dim=1).float()  # [n, M]
            shares.append(hits.mean(dim=0).tolist())
        matrix = analysis_matrix(
            f"Share of test samples whose top-{self.args.top_n} selected pool prompts include "
            "each prompt",
            "test task",
            "pool prompt",
            list(test_sets),
            [str(m + 1) for m in range(self.args.pool_size)],
            shares,
        )
        return StageAnalysis({"prompt_selection": matrix})
