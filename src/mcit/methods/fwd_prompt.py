"""Fwd-Prompt (Zheng et al., "Beyond Anti-Forgetting: Multimodal Continual Instruction Tuning
with Positive Forward Transfer", arXiv 2401.09181), reconstructed: the paper's code is not
public. Each choice is marked [paper] (stated by the paper) or [mcit] (mcit's own, with the
config key that changes it); docs/methods/fwd-prompt.md gives the reasons.

Rehearsal-free, no task id, the whole LMM frozen. What trains is a pool of prompts and their
keys; what keeps old tasks is where the prompts' gradient may point.

- Pool [paper: a multimodal prompt pool]: M prompts `P_m ∈ R^{L×d}` in one `[M, L, d]`
  parameter, each with an image key and a text key in CLIP's space (`[M, c]` each). A sample's
  score for prompt m is the mean of cos(f_img(x), k^img_m) and cos(f_txt(x), k^txt_m) (the text
  cosine alone without an image) [mcit]; its N best prompts go right after BOS, best first.
  Key loss `1 − score` of the selected prompts, weighted by λ, as in L2P [mcit].
- Pre-trained subspace U_pre [paper: "the pre-trained subspace"], once, before the first task:
  [mcit] the span of the frozen LM's input-token embeddings (every ordinary vocabulary row),
  kept to an energy fraction ε_pre (`pretrained_energy`). It needs no data and is the same for
  every stream.
- Old tasks' subspace U_old [paper: "residual space" of old tasks, from the SVD of input
  embeddings]: after each task, the LM input rows (projected image tokens and instruction
  tokens, answers excluded) of `subspace_samples` of its training samples, R_t ∈ R^{n×d}. The
  part of R_t outside U_old is decomposed and its top directions are added until U_old holds a
  fraction ε (`energy`) of R_t's energy: Gradient Projection Memory's criterion (Saha et al.,
  ICLR 2021, Eq. 8-9) [mcit].
- Before each optimizer step, the prompts' gradient G (rows in R^d) becomes
  `G ← G U_pre U_preᵀ + β · G (I − U_pre U_preᵀ)` (β = `beta`: the part outside the pre-trained
  subspace damped), then `G ← G (I − U_old U_oldᵀ)` (no component in old tasks' subspace). The
  residual projection comes last [mcit] so that the component in U_old is exactly zero.
  After the step the same projection is applied to the update ΔP itself [mcit]: AdamW rescales
  each coordinate, so a projected gradient alone would not give a projected update.
  `residual_projection` and `pretrained_projection` switch each off (the ablations).

Both bases are buffers of fixed shape `[d, d]` with their rank in a second buffer, so they are
saved with the method's state, restored exactly, and broadcast by DDP with the other buffers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from mcit.config import AT_LEAST_1, NON_NEGATIVE, Bounds, setting
from mcit.data.collate import Batch, Collator
from mcit.data.sample import Sample, Task
from mcit.errors import ConfigError
from mcit.evaluation.analysis import StageAnalysis, analysis_matrix
from mcit.methods.base import (
    ContinualMethod,
    LossOutput,
    MethodArgs,
    ModelShapes,
    ParameterFormula,
    register_method,
)
from mcit.models.guidance import backbone_guidance
from mcit.models.prompting import prompted_inputs, random_token_rows, real_token_ids

FRACTION = Bounds(0.0, 1.0, low_open=True)
UNIT = Bounds(0.0, 1.0)
SPECTRUM_SHOWN = 16  # leading singular values per task in the analyses


@dataclass
class FwdPromptArgs(MethodArgs):
    pool_size: int = setting(10, help="M prompts in the pool [mcit: L2P's]", bounds=AT_LEAST_1)
    prompt_length: int = setting(5, help="L tokens per prompt [mcit: L2P's]", bounds=AT_LEAST_1)
    top_n: int = setting(3, help="N prompts selected per sample [mcit]", bounds=AT_LEAST_1)
    key_loss_weight: float = setting(
        1.0, help="λ of the key loss 1 − score [mcit: L2P's]", bounds=NON_NEGATIVE
    )
    energy: float = setting(
        0.97, help="ε: energy of each task's inputs the old basis keeps [mcit: GPM's]",
        bounds=FRACTION,
    )  # fmt: skip
    pretrained_energy: float = setting(
        0.97, help="ε_pre: energy of the token embeddings U_pre keeps [mcit]", bounds=FRACTION
    )
    beta: float = setting(
        0.5, help="β: weight of the gradient outside U_pre (1: no damping) [mcit]", bounds=UNIT
    )
    residual_projection: bool = setting(
        True, help="project the gradient off old tasks' subspace [paper]"
    )
    pretrained_projection: bool = setting(
        True, help="damp the gradient outside the pre-trained subspace by β [paper]"
    )
    subspace_samples: int = setting(
        64, help="training samples per task whose inputs span its subspace [mcit]",
        bounds=AT_LEAST_1,
    )  # fmt: skip
    guidance_cache_size: int = setting(
        200_000, help="frozen CLIP features kept in memory", bounds=AT_LEAST_1
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.top_n > self.pool_size:
            raise ConfigError(
                f"method.args.top_n: {self.top_n} must not exceed pool_size ({self.pool_size})"
            )


# ---------------------------------------------------------------------------- subspaces
def energy_rank(eigenvalues: torch.Tensor, energy: float, captured: float, total: float) -> int:
    """The fewest leading directions (eigenvalues σ², descending) that, added to the energy
    already `captured`, hold the fraction `energy` of `total` (GPM, Saha et al. 2021, Eq. 9)."""
    target = energy * total * (1 - 1e-9)  # the same rounding allowance for both tests
    if total <= 0 or captured >= target:
        return 0
    cumulative = captured + torch.cumsum(eigenvalues.clamp(min=0), dim=0)
    reached = (cumulative >= target).nonzero()
    return int(reached[0]) + 1 if len(reached) else len(eigenvalues)


def extend_basis(
    basis: torch.Tensor, rows: torch.Tensor, energy: float
) -> tuple[torch.Tensor, dict[str, Any]]:
    """`basis` [d, K] (orthonormal columns) extended by the directions of `rows` [n, d] it
    lacks, until it holds the fraction `energy` of the rows' energy; and what was measured: the
    rows' energy fraction already inside `basis`, the rank added, the normalised spectrum."""
    r = rows.double()
    u = basis.double()
    total = float((r**2).sum())
    residual = r - (r @ u) @ u.T if u.shape[1] else r
    captured = total - float((residual**2).sum())
    # The right singular vectors of the residual, from its d × d Gram matrix (n may be ≫ d).
    eigenvalues, vectors = torch.linalg.eigh(residual.T @ residual)
    eigenvalues, vectors = eigenvalues.flip(0), vectors.flip(1)
    k = energy_rank(eigenvalues, energy, captured, total)
    k = min(k, r.shape[1] - u.shape[1])
    new = vectors[:, :k]
    if u.shape[1] and k:  # re-orthogonalise against the old columns (rounding), then normalise
        new = new - u @ (u.T @ new)
        new, _ = torch.linalg.qr(new)
    spectrum = (eigenvalues.clamp(min=0) / total).tolist() if total > 0 else []
    info = {
        "energy_inside_before": captured / total if total > 0 else 0.0,
        "rank_added": k,
        "spectrum": spectrum[:SPECTRUM_SHOWN],
    }
    return torch.cat([u, new], dim=1).to(basis.dtype), info


def project_off(grad: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Rows of `grad` [.., d] without their component in span(`basis` [d, K])."""
    if basis.shape[1] == 0:
        return grad
    return grad - (grad @ basis) @ basis.T


def damp_outside(grad: torch.Tensor, basis: torch.Tensor, beta: float) -> torch.Tensor:
    """Rows of `grad`: their part inside span(`basis`) kept, the part outside scaled by β."""
    inside = (grad @ basis) @ basis.T
    return inside + beta * (grad - inside)


def subspace_overlap(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """Mean squared cosine of the principal angles between span(a) and span(b) (orthonormal
    columns): ‖aᵀb‖²_F / min(rank a, rank b); 1 when one span contains the other."""
    k = min(a.shape[1], b.shape[1])
    if k == 0:
        return None
    return float((a.T.double() @ b.double()).pow(2).sum() / k)


# ---------------------------------------------------------------------------- the method
@register_method
class FwdPrompt(ContinualMethod):
    name = "fwd-prompt"
    args_class = FwdPromptArgs
    args: FwdPromptArgs
    reconstruction = (
        "a reconstruction from the paper's description (its code is not public); "
        "docs/methods/fwd-prompt.md marks each choice"
    )

    def attach(self) -> None:
        self.guidance = backbone_guidance(
            self.backbone, "Fwd-Prompt", "keys", True, self.args.guidance_cache_size
        )
        m, length, d = self.args.pool_size, self.args.prompt_length, self.backbone.hidden_size
        token_ids = real_token_ids(self.backbone, self.name)
        rows = random_token_rows(self.backbone, token_ids, m * length)
        self.prompts = nn.Parameter(rows.reshape(m, length, d))  # [M, L, d]
        c = self.guidance.dim
        self.image_keys = nn.Parameter(torch.empty(m, c).uniform_(-1.0, 1.0))  # [M, c]
        self.text_keys = nn.Parameter(torch.empty(m, c).uniform_(-1.0, 1.0))
        for keys in (self.image_keys, self.text_keys):  # λ = 0: no gradient, not in the optimizer
            keys.requires_grad_(self.args.key_loss_weight > 0)
        self.register_buffer("old_basis", torch.zeros(d, d))
        self.register_buffer("old_rank", torch.zeros((), dtype=torch.long))
        self.register_buffer("pretrained_basis", torch.zeros(d, d))
        self.register_buffer("pretrained_rank", torch.zeros((), dtype=torch.long))
        table = self.backbone.input_embeddings.weight.detach()
        embeddings = table[token_ids.to(table.device)].float()
        basis, _ = extend_basis(torch.zeros(d, 0), embeddings.cpu(), self.args.pretrained_energy)
        self._set_basis("pretrained", basis)
        self.subspaces: list[dict[str, Any]] = []  # per learned task, what `end_task` measured

    @classmethod
    def parameters_by_formula(
        cls, args: MethodArgs, shapes: ModelShapes, tasks: int
    ) -> ParameterFormula:
        """The pool P ∈ R^{M×L×d} and the image and text keys (2·M·c), shared by every task;
        the keys train only when λ > 0. The bases are buffers, not parameters."""
        assert isinstance(args, FwdPromptArgs)
        d, c, m = shapes.lm_hidden, shapes.guidance_width, args.pool_size
        pool, keys = m * args.prompt_length * d, 2 * m * c
        return ParameterFormula(
            trainable=pool + (keys if args.key_loss_weight > 0 else 0),
            added=pool + keys,
            first_task=pool + keys,
            guidance_encoder=True,
            formula=f"M·L·d + 2·M·c, M = {m}, L = {args.prompt_length}, d = {d}, c = {c}",
        )

    # ------------------------------------------------------------------ bases
    def _basis(self, which: str) -> torch.Tensor:
        rank = int(getattr(self, f"{which}_rank"))
        return getattr(self, f"{which}_basis")[:, :rank]

    def _set_basis(self, which: str, basis: torch.Tensor) -> None:
        full = getattr(self, f"{which}_basis")
        with torch.no_grad():
            full.zero_()
            full[:, : basis.shape[1]] = basis.to(full.device, full.dtype)
            getattr(self, f"{which}_rank").fill_(basis.shape[1])

    @property
    def old_tasks_basis(self) -> torch.Tensor:
        """U_old [d, K]: orthonormal columns spanning the finished tasks' inputs."""
        return self._basis("old")

    @property
    def pretrained_subspace(self) -> torch.Tensor:
        """U_pre [d, K_pre]: orthonormal columns spanning the pre-trained token embeddings."""
        return self._basis("pretrained")

    @torch.no_grad()
    def input_rows(self, samples: list[Sample], batch_size: int = 16) -> torch.Tensor:
        """The LM input rows [n, d] (image tokens and instruction, no answer, no prompt) of
        `samples`, float32 on the CPU."""
        collate = Collator(self.backbone)
        out = []
        for start in range(0, len(samples), batch_size):
            batch = collate(samples[start : start + batch_size], with_answer=False)
            batch = batch.to(self.backbone.device)
            embeds = self.backbone.embed_batch(batch)
            out.append(embeds[batch.attention_mask.bool()].float().cpu())
        return torch.cat(out) if out else torch.zeros(0, self.backbone.hidden_size)

    def _sampled(self, samples: list[Sample], key: str) -> list[Sample]:
        """At most `subspace_samples` of `samples`, in file order, drawn with a seed made from
        `key`: the same on every rank and on a resumed run, and bounded in memory."""
        n = min(self.args.subspace_samples, len(samples))
        picks = sorted(random.Random(f"fwd-prompt/{key}").sample(range(len(samples)), n))
        return [samples[i] for i in picks]

    def end_task(self, task_id: int, task: Task, train_samples: list[Sample]) -> None:
        """U_old ← U_old extended by this task's inputs (GPM's energy criterion)."""
        rows = self.input_rows(self._sampled(train_samples, task.name))
        inside_pretrained = None
        if len(rows):
            pre = self.pretrained_subspace.cpu().double()
            r = rows.double()
            inside_pretrained = float(((r @ pre) ** 2).sum() / (r**2).sum())
        basis, info = extend_basis(self.old_tasks_basis.cpu(), rows, self.args.energy)
        self._set_basis("old", basis)
        self.subspaces.append(
            {
                "task": task.name,
                "rows": int(len(rows)),
                "rank_total": int(basis.shape[1]),
                "energy_inside_pretrained": inside_pretrained,
                **info,
            }
        )
        super().end_task(task_id, task, train_samples)

    # ------------------------------------------------------------------ selection
    def scores(self, samples: list[Sample]) -> torch.Tensor:
        """Per sample and prompt [B, M]: mean of the image-key and text-key cosines (the text
        cosine alone for a sample without an image); differentiable in the keys only."""
        feats = self.guidance.features(samples, self.backbone.device, image=True, text=True)
        text = F.normalize(feats.text.float(), dim=-1) @ F.normalize(self.text_keys, dim=-1).T
        image = F.normalize(feats.image.float(), dim=-1) @ F.normalize(self.image_keys, dim=-1).T
        return torch.where(feats.has_image[:, None], (image + text) / 2, text)

    def select(self, scores: torch.Tensor) -> torch.Tensor:
        """The N best prompts per sample [B, N], best first (per sample: batch-independent)."""
        return scores.detach().topk(self.args.top_n, dim=1).indices

    def prefix(self, selected: torch.Tensor) -> torch.Tensor:
        chosen = self.prompts[selected.to(self.prompts.device)]  # [B, N, L, d]
        return chosen.reshape(selected.shape[0], -1, self.prompts.shape[-1])

    # ------------------------------------------------------------------ training
    def training_loss(self, batch: Batch) -> LossOutput:
        scores = self.scores(batch.samples)
        selected = self.select(scores)
        embeds, mask, labels = prompted_inputs(self.backbone, batch, self.prefix(selected))
        lm = self.backbone.lm_loss(self.backbone.logits(embeds, mask), labels)
        key = 1 - scores.gather(1, selected).mean()
        loss = lm + self.args.key_loss_weight * key
        return LossOutput(loss, {"lm": lm.item(), "key": key.item()})

    def _projected(self, rows: torch.Tensor) -> torch.Tensor:
        """Rows in R^d damped outside U_pre by β, then projected off U_old (module doc)."""
        g = rows.float()
        if self.args.pretrained_projection and self.args.beta != 1.0:
            g = damp_outside(g, self.pretrained_subspace.to(g.device), self.args.beta)
        if self.args.residual_projection:
            g = project_off(g, self.old_tasks_basis.to(g.device))
        return g

    @torch.no_grad()
    def before_optimizer_step(self) -> None:
        """The prompts' gradient projected (so that the optimizer's moments see it), and the
        prompts as they are, for `after_optimizer_step`."""
        projects = self.args.residual_projection or (
            self.args.pretrained_projection and self.args.beta != 1.0
        )
        self._before_step = self.prompts.detach().clone() if projects else None
        grad = self.prompts.grad
        if grad is not None:
            g = self._projected(grad.reshape(-1, grad.shape[-1]))
            grad.copy_(g.reshape(grad.shape).to(grad.dtype))

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        """The update itself projected: AdamW divides each coordinate by its own scale (and
        weight decay pulls along every direction), so a projected gradient alone would still
        move the prompts inside U_old."""
        before = getattr(self, "_before_step", None)
        if before is None:
            return
        delta = (self.prompts - before).reshape(-1, before.shape[-1])
        self.prompts.copy_(before + self._projected(delta).reshape(before.shape).to(before.dtype))
        self._before_step = None

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def generate(self, batch: Batch, max_new_tokens: int = 16) -> list[str]:
        selected = self.select(self.scores(batch.samples))
        embeds, mask, _ = prompted_inputs(self.backbone, batch, self.prefix(selected))
        return self.backbone.generate(embeds, mask, max_new_tokens=max_new_tokens)

    @torch.no_grad()
    def explain(self, batch: Batch) -> list[dict[str, Any]]:
        """Per sample: the selected prompts (1-based, best first) with their scores."""
        scores = self.scores(batch.samples)
        selected = self.select(scores)
        return [
            {
                "selected": [
                    {"prompt": int(m) + 1, "score": float(scores[b, m])} for m in selected[b]
                ],
                "scores": [float(s) for s in scores[b]],
            }
            for b in range(len(batch))
        ]

    # ------------------------------------------------------------------ analyses
    @torch.no_grad()
    def analyses(
        self, test_sets: dict[str, list[Sample]], learned_tasks: list[str]
    ) -> StageAnalysis:
        """The paper's motivating observation on the evaluated tasks' test inputs (at most
        `subspace_samples` per task, seeded): the overlap
        of each pair of tasks' input subspaces (and with U_pre), each task's energy spectrum;
        and what the run kept per learned task (rank added, energy already in U_old)."""
        tasks = [name for name, samples in test_sets.items() if samples]
        if not tasks:
            return StageAnalysis()
        own = {}
        spectra = []
        d = self.backbone.hidden_size
        for name in tasks:
            rows = self.input_rows(self._sampled(test_sets[name], f"test/{name}"))
            basis, info = extend_basis(torch.zeros(d, 0), rows, self.args.energy)
            own[name] = basis
            spectra.append((info["spectrum"] + [None] * SPECTRUM_SHOWN)[:SPECTRUM_SHOWN])
        pre = self.pretrained_subspace.cpu()
        overlap = [
            [subspace_overlap(own[a], own[b]) for b in tasks] + [subspace_overlap(own[a], pre)]
            for a in tasks
        ]
        matrices = {
            "subspace_overlap": analysis_matrix(
                "Overlap of tasks' input subspaces (mean cos² of principal angles, test inputs, "
                f"ε = {self.args.energy:g})",
                "task",
                "task",
                tasks,
                [*tasks, "pre-trained"],
                overlap,
            ),
            "energy_spectrum": analysis_matrix(
                "Share of each task's input energy per singular direction (test inputs)",
                "task",
                "direction",
                tasks,
                [str(i + 1) for i in range(SPECTRUM_SHOWN)],
                spectra,
                fmt=".3f",
            ),
        }
        if self.subspaces:
            matrices["kept_subspace"] = analysis_matrix(
                "What each learned task added to the old tasks' basis (training inputs)",
                "learned task",
                "measure",
                [s["task"] for s in self.subspaces],
                ["rank added", "energy already in U_old", "energy in U_pre"],
                [
                    [
                        float(s["rank_added"]),
                        s["energy_inside_before"],
                        s["energy_inside_pretrained"],
                    ]
                    for s in self.subspaces
                ],
            )
        summary = {
            "old_basis_rank": float(self.old_rank),
            "pretrained_rank": float(self.pretrained_rank),
        }
        return StageAnalysis(matrices, summary)

    # ------------------------------------------------------------------ state
    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "subspaces": list(self.subspaces)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)
        self.subspaces = list(state.get("subspaces", []))
