"""ModalPrompt (Zeng et al., "ModalPrompt: Dual-Modality Guided Prompt for Continual Learning of
Large Multimodal Models", arXiv 2410.05849), as the paper and its authors' code state it;
each choice below is marked [paper], [code] or [spec] (mcit's own, where both are silent).

Rehearsal-free, no task id anywhere, the whole LMM frozen. Per task t:

- prototype prompts `P_t ∈ R^{L×d}` [paper §3.1, code]: the new rows of an extended
  input-embedding table. They are held as one separate `nn.Parameter` per task rather than
  appended to the vocabulary matrix, so freezing is exact by construction: the real vocabulary
  rows, `lm_head` (not extended — prompts are never generated) and every old task's rows are
  tensors the optimizer never sees. (The authors' code resets rows of one shared table after
  each step and, for the last task, resets the very rows it should train; mcit does neither.)
  Init [code]: each row a copy of the embedding of a random real, non-special token.
- a projection `g_t: R^d → R^c` (Linear → SiLU → Linear, c = CLIP feature width) and the
  prototype feature `p̄_t = mean_l g_t(P_t[l])` (Eq. 3, 9).

Selection [paper Eq. 5-8, code]: the similarity of a sample x to task i's prototype is
`s_i(x) = λ·cos(f_img(x), p̄_i) + (1−λ)·cos(f_txt(x), p̄_i)` with frozen CLIP features
(`mcit.models.guidance`); at inference the prompts of the top-k tasks by `s_i(x)` are spliced
in right after BOS, before the system prompt [code], the most similar nearest to the text
[code], so the prefix holds at most k·L tokens whatever the number of tasks. Training task t
(Eq. 10) uses `P_t` plus the top-(k−1) old tasks' prompts by `s_i(x)`, i < t (index selection,
no gradient through s), `P_t` nearest to the text. Loss (Eq. 11-13):
`L = L_LM + [1 − mean_b cos(f_img_b, p̄_t)] + [1 − mean_b cos(f_txt_b, p̄_t)]`.
After task t, `P_t` and `g_t` never change again: they stop requiring grad and the trainer
builds each stage's optimizer from what requires grad only.

Ablations [paper Tab. 3-4], each one key of `ModalPromptArgs`: guidance image / text / dual
(`guidance_lambda` 1 / 0 / 0.5, with the unused modality's prototype-loss weight set to 0 in
the shipped YAMLs), `fusion`, `selection` (off = every learned prompt concatenated, oldest
first, as Progressive Prompts; training then also prefixes every old prompt when `fusion` is
on), `prompt_length` (L) and `top_k` (k).

[spec] `prompt_depth: every-layer`: each task also holds `[N − 1, L, d]` layer prompts that
replace the hidden states at its prompt positions at the input of decoder layers 1..N−1 (deep
prompts: VPT-deep, Jia et al. 2022, §3.2; P-Tuning v2, Liu et al. 2022, §3.2), selected, fused
and frozen with `P_t`; the prototype still comes from `P_t`. For LMs too small for input prompts.

[spec] A sample without an image has no `f_img`: its similarity uses the text term alone and
it is left out of the image term of the prototype loss.

Specification: docs/methods/modalprompt.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from mcit.config import AT_LEAST_1, NON_NEGATIVE, Bounds, setting
from mcit.data.collate import Batch
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
from mcit.models.guidance import GuidanceFeatures, backbone_guidance
from mcit.models.prompting import (  # noqa: F401 (insert_after_bos: its historic home)
    PerTaskPrompts,
    PrefixSlots,
    insert_after_bos,
    insertion_points,
    prompted_inputs,
    prompts_at_every_layer,
    random_token_rows,
)


@dataclass
class ModalPromptArgs(MethodArgs):
    prompt_length: int = setting(
        10, help="L, prototype prompts per task [paper §3.1, code]", bounds=AT_LEAST_1
    )
    top_k: int = setting(
        3,
        help="k prompt sets selected per sample at inference [paper Eq. 7-8, code]",
        bounds=AT_LEAST_1,
    )
    guidance_lambda: float = setting(
        0.5,
        help="λ of Eq. 5-6: 1 = image-only, 0 = text-only guidance [paper Tab. 3]",
        bounds=Bounds(low=0, high=1),
    )
    fusion: bool = setting(True, help="Eq. 10: train P_t together with the top-(k−1) old prompts")
    selection: bool = setting(
        True, help="Eq. 7-8; false = concatenate all learned prompts (Progressive Prompts)"
    )
    text_projection: bool = setting(
        False, help="f_txt through CLIP's text projection [paper] or not [code]"
    )
    prototype_loss_weight_image: float = setting(
        1.0, help="weight of the image prototype loss (Eq. 11-12)", bounds=NON_NEGATIVE
    )
    prototype_loss_weight_text: float = setting(
        1.0, help="weight of the text prototype loss (Eq. 11, 13)", bounds=NON_NEGATIVE
    )
    prompt_depth: str = setting(
        "input",
        help="where P_t acts: 'input' = spliced into the input embeddings only [paper §3.1]; "
        "'every-layer' = also a learned prefix at the input of every decoder layer, deep "
        "prompts as in VPT-deep / P-Tuning v2 [spec], for LMs too small for input prompts",
        choices=("input", "every-layer"),
    )
    guidance_cache_size: int = setting(
        200_000, help="frozen CLIP features kept in memory (images + texts)", bounds=AT_LEAST_1
    )


@dataclass
class Selection:
    """Per sample, the tasks whose prompts are prefixed (most similar last = nearest the text)
    and the similarities `s_i(x)` to every learned prototype."""

    tasks: torch.Tensor  # [B, m] long
    similarity: torch.Tensor  # [B, T] float32
    image_cosine: torch.Tensor | None  # [B, T]
    text_cosine: torch.Tensor | None  # [B, T]


@register_method
class ModalPrompt(PerTaskPrompts, ContinualMethod):
    name = "modalprompt"
    args_class = ModalPromptArgs
    args: ModalPromptArgs

    def attach(self) -> None:
        if self.args.prompt_depth == "every-layer" and self.backbone.config.gradient_checkpointing:
            # The layer prompts enter through forward hooks that live only while the prompted
            # forward runs; a checkpointed layer recomputed in backward would run without them.
            raise ConfigError(
                "method.args.prompt_depth: every-layer cannot train with "
                "model.backbone.gradient_checkpointing: true (the recomputed layers would not "
                "see the layer prompts); turn one of them off"
            )
        self.guidance = backbone_guidance(
            self.backbone,
            "ModalPrompt",
            "guidance features",
            self.args.text_projection,
            self.args.guidance_cache_size,
        )
        self._init_task_prompts()  # P_t, one [L, d] per task
        # [spec] prompt_depth 'every-layer': one [N − 1, L, d] per task, decoder layers 1..N−1.
        self.layer_prompts = nn.ParameterList()
        self.projections = nn.ModuleList()  # g_t, one per task

    # ------------------------------------------------------------------ lifecycle
    def begin_task(self, task_id: int, task: Task) -> None:
        # P_t: init [code], rows copied from random real token embeddings.
        prompt = self._new_task_prompt(task_id, self.args.prompt_length)
        device = prompt.device
        d, c = self.backbone.hidden_size, self.guidance.dim
        projection = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, c)).to(device)
        # With both prototype-loss weights 0, g_t gets no gradient: keep it out of the optimizer.
        trains_projection = (
            self.args.prototype_loss_weight_image > 0 or self.args.prototype_loss_weight_text > 0
        )
        projection.requires_grad_(trains_projection)
        self.projections.append(projection)
        if self.args.prompt_depth == "every-layer":
            # Drawn after g_t, so the input-only setting draws the same rows as before it existed.
            layers, length = self.backbone.num_layers - 1, self.args.prompt_length
            rows = random_token_rows(self.backbone, self._init_token_ids, layers * length)
            self.layer_prompts.append(nn.Parameter(rows.reshape(layers, length, d)))

    @classmethod
    def parameters_by_formula(
        cls, args: MethodArgs, shapes: ModelShapes, tasks: int
    ) -> ParameterFormula:
        """Per task: prompts P_t ∈ R^{L×d} [paper §3.1] (with `prompt_depth: every-layer`, also
        its layer prompts ∈ R^{(N−1)×L×d}, N the LM's layers) and the projection g_t =
        Linear(d, d) → SiLU → Linear(d, c) with biases [paper Eq. 3, 9]; only the current task's
        train, and its g_t only when a prototype loss weight is above 0 (see `begin_task`)."""
        assert isinstance(args, ModalPromptArgs)
        d, c, length = shapes.lm_hidden, shapes.guidance_width, args.prompt_length
        depth = shapes.lm_layers if args.prompt_depth == "every-layer" else 1
        prompts, projection = depth * length * d, (d * d + d) + (d * c + c)
        trains_projection = (
            args.prototype_loss_weight_image > 0 or args.prototype_loss_weight_text > 0
        )
        return ParameterFormula(
            trainable=prompts + (projection if trains_projection else 0),
            added=tasks * (prompts + projection),
            first_task=prompts + projection,
            guidance_encoder=True,
            formula=f"D·L·d + (d·d + d) + (d·c + c) per task, D = {depth} prompted layer(s), "
            f"L = {length}, d = {d}, c = {c}",
        )

    def _freeze_learned(self, n: int) -> None:
        """P_i and g_i of the first `n` tasks never change again."""
        super()._freeze_learned(n)
        for i in range(n):
            self.projections[i].requires_grad_(False)
            if i < len(self.layer_prompts):
                self.layer_prompts[i].requires_grad_(False)

    # ------------------------------------------------------------------ prototypes, similarity
    def prototype(self, i: int) -> torch.Tensor:
        """p̄_i = mean_l g_i(P_i[l]): projection per token, then the mean (Eq. 3, 9)."""
        return self.projections[i](self.prompts[i]).mean(dim=0)

    def prototypes(self) -> torch.Tensor:
        return torch.stack([self.prototype(i) for i in range(self.num_tasks)])  # [T, c]

    def _features(self, samples: list[Sample], image: bool, text: bool) -> GuidanceFeatures:
        return self.guidance.features(samples, self.backbone.device, image=image, text=text)

    def _needs(self, samples: list[Sample]) -> tuple[bool, bool]:
        """Which guidance features the similarity reads (λ = 1 or 0 drops one modality)."""
        lam = self.args.guidance_lambda
        all_images = all("image" in s.media for s in samples)
        return lam > 0, lam < 1 or not all_images

    def similarity(
        self, feats: GuidanceFeatures, prototypes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """s_i(x) = λ·cos(f_img(x), p̄_i) + (1−λ)·cos(f_txt(x), p̄_i) (Eq. 5-6); [B, T] each."""
        protos = F.normalize(prototypes.float(), dim=-1)
        lam = self.args.guidance_lambda
        # [spec] no image: the text term alone.
        lam_b = torch.where(feats.has_image, lam, 0.0)[:, None]
        cos_img = cos_txt = None
        s = torch.zeros(len(feats.has_image), protos.shape[0], device=protos.device)
        if feats.image is not None:
            cos_img = F.normalize(feats.image, dim=-1) @ protos.T
            if lam > 0:
                s = s + lam_b * cos_img
        if feats.text is not None:
            cos_txt = F.normalize(feats.text, dim=-1) @ protos.T
            if (lam_b < 1).any():
                s = s + (1 - lam_b) * cos_txt
        return s, cos_img, cos_txt

    @torch.no_grad()
    def select(self, samples: list[Sample]) -> Selection:
        """Inference (Eq. 7-8): per sample, the top-k learned tasks by s_i(x), k capped at the
        number learned, ordered so the most similar is nearest the text; with selection off,
        every learned task in stream order. Reads the samples' media and instruction only."""
        image, text = self._needs(samples)
        return self._select(self._features(samples, image=image, text=text))

    def _select(self, feats: GuidanceFeatures) -> Selection:
        s, cos_img, cos_txt = self.similarity(feats, self.prototypes())
        if self.args.selection:
            k = min(self.args.top_k, self.num_tasks)
            tasks = s.topk(k, dim=1).indices.flip(1)
        else:
            tasks = torch.arange(self.num_tasks, device=s.device).expand(s.shape[0], -1)
        return Selection(tasks, s, cos_img, cos_txt)

    def _prefix(self, tasks: torch.Tensor) -> torch.Tensor:
        """The prompts of `tasks` [B, m], concatenated per sample: [B, m·L, d]."""
        table = torch.stack(list(self.prompts))  # [T, L, d]
        chosen = table[tasks]  # [B, m, L, d]
        return chosen.reshape(tasks.shape[0], -1, table.shape[-1])

    def _spliced_inputs(
        self, batch: Batch, tasks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Input embeddings, attention mask and labels with the prompts of `tasks` spliced in:
        the input layer's part of `prompted` only (private: with `every-layer` prompts a forward
        on these alone would miss the layer prompts)."""
        return prompted_inputs(self.backbone, batch, self._prefix(tasks.to(self.backbone.device)))

    @contextlib.contextmanager
    def prompted(
        self, batch: Batch, tasks: torch.Tensor
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """Input embeddings, attention mask and labels with the prompts of `tasks` spliced in;
        with `prompt_depth: every-layer` the LM reads their layer prompts inside this block."""
        tasks = tasks.to(self.backbone.device)
        embeds, mask, labels = self._spliced_inputs(batch, tasks)
        if self.args.prompt_depth == "input":
            yield embeds, mask, labels
            return
        length = tasks.shape[1] * self.args.prompt_length
        at = insertion_points(
            batch.attention_mask.to(mask.device),
            batch.input_ids.to(mask.device),
            self.backbone.tokenizer.bos_token_id,
        )
        tables = list(self.layer_prompts)  # T × [N − 1, L, d]

        def rows_for_layer(i: int) -> torch.Tensor:
            """Layer i's prompts of `tasks`, concatenated per sample as `_prefix` does."""
            layer = torch.stack([table[i - 1] for table in tables])  # [T, L, d]
            return layer[tasks].reshape(tasks.shape[0], length, -1)  # [B, m·L, d]

        slots = PrefixSlots(at, length, embeds.shape[1])
        with prompts_at_every_layer(self.backbone.decoder_layers, slots, rows_for_layer):
            yield embeds, mask, labels

    # ------------------------------------------------------------------ training
    def training_prompts(self, samples: list[Sample]) -> tuple[torch.Tensor, GuidanceFeatures]:
        """Tasks whose prompts train task t's batch (Eq. 10): the top-(k−1) old tasks by s_i(x)
        (least similar first), then t itself; also the guidance features the loss needs."""
        t = self.num_tasks - 1
        args = self.args
        fuse_selected = args.fusion and args.selection and t > 0 and args.top_k > 1
        sim_image, sim_text = self._needs(samples) if fuse_selected else (False, False)
        feats = self._features(
            samples,
            image=sim_image or args.prototype_loss_weight_image > 0,
            text=sim_text or args.prototype_loss_weight_text > 0,
        )
        device = self.backbone.device
        old = torch.empty(len(samples), 0, dtype=torch.long, device=device)
        if fuse_selected:
            with torch.no_grad():  # selection by index: no gradient through s
                old_protos = torch.stack([self.prototype(i) for i in range(t)])
                s, _, _ = self.similarity(feats, old_protos)
                old = s.topk(min(args.top_k - 1, t), dim=1).indices.flip(1)
        elif args.fusion and not args.selection:  # Progressive Prompts: every old prompt
            old = torch.arange(t, device=device).expand(len(samples), -1)
        current = torch.full((len(samples), 1), t, dtype=torch.long, device=device)
        return torch.cat([old, current], dim=1), feats

    def training_loss(self, batch: Batch) -> LossOutput:
        if not self.num_tasks:
            raise ValueError("modalprompt: training_loss before begin_task")
        tasks, feats = self.training_prompts(batch.samples)
        with self.prompted(batch, tasks) as (embeds, mask, labels):
            lm = self.backbone.lm_loss(self.backbone.logits(embeds, mask), labels)
        p_t = self.prototype(self.num_tasks - 1)  # Eq. 9
        loss = lm
        parts = {"lm": lm.item()}
        w_img, w_txt = self.args.prototype_loss_weight_image, self.args.prototype_loss_weight_text
        if w_img > 0 and bool(feats.has_image.any()):
            # Eq. 12: 1 − mean_b cos(f_img_b, p̄_t), over the samples that have an image.
            image = feats.image[feats.has_image]
            proto_image = 1 - F.cosine_similarity(image, p_t[None, :], dim=-1).mean()
            loss = loss + w_img * proto_image
            parts["proto_image"] = proto_image.item()
        if w_txt > 0:
            # Eq. 13: 1 − mean_b cos(f_txt_b, p̄_t).
            proto_text = 1 - F.cosine_similarity(feats.text, p_t[None, :], dim=-1).mean()
            loss = loss + w_txt * proto_text
            parts["proto_text"] = proto_text.item()
        parts["proto"] = sum(v for k, v in parts.items() if k.startswith("proto_"))
        return LossOutput(loss, parts)  # Eq. 11: L_LM + L_proto

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def generate(self, batch: Batch, max_new_tokens: int = 16) -> list[str]:
        if not self.num_tasks:
            return super().generate(batch, max_new_tokens=max_new_tokens)
        selection = self.select(batch.samples)
        with self.prompted(batch, selection.tasks) as (embeds, mask, _):
            return self.backbone.generate(embeds, mask, max_new_tokens=max_new_tokens)

    @torch.no_grad()
    def explain(self, batch: Batch) -> list[dict[str, Any]]:
        """Per sample: the selected tasks (most similar first) and every learned task's s_i(x)."""
        if not self.num_tasks:
            return []
        feats = self._features(batch.samples, image=True, text=True)
        selection = self._select(feats)
        s, cos_img, cos_txt = selection.similarity, selection.image_cosine, selection.text_cosine
        names = self._task_names()
        out = []
        for b in range(len(batch)):

            def entry(i: int, b: int = b) -> dict[str, Any]:
                return {
                    "task": names[i],
                    "similarity": float(s[b, i]),
                    "image_cosine": float(cos_img[b, i]) if feats.has_image[b] else None,
                    "text_cosine": float(cos_txt[b, i]),
                }

            chosen = selection.tasks[b].flip(0).tolist()
            out.append(
                {
                    "selected": [entry(i) for i in chosen],
                    "all": [entry(i) for i in range(self.num_tasks)],
                    "guidance_lambda": self.args.guidance_lambda,
                    "selection": self.args.selection,
                }
            )
        return out

    def _task_names(self) -> list[str]:
        names = list(self.tasks_seen)
        return names + [f"task {i + 1}" for i in range(len(names), self.num_tasks)]

    @classmethod
    def format_explanation(cls, explanation: dict[str, Any]) -> list[str]:
        """The selected tasks, most similar first, then every learned task's similarity s with
        its image and text cosines."""
        lam = explanation.get("guidance_lambda")
        how = "" if lam is None else f"; s = {lam:g}·cos(image) + {1 - lam:g}·cos(text)"
        head = "selected prompts (most similar first" + how + ")"
        if explanation.get("selection") is False:
            head = "selection off: every learned task's prompts are used" + how.replace(";", ":")
        lines = [head + ":"]
        lines += _similarity_rows(explanation["selected"], numbered=True)
        lines.append("similarity to every learned task:")
        lines += _similarity_rows(explanation["all"], numbered=False)
        return lines

    # ------------------------------------------------------------------ analyses
    @torch.no_grad()
    def analyses(
        self, test_sets: dict[str, list[Sample]], learned_tasks: list[str]
    ) -> StageAnalysis:
        """The paper's Fig. 5 (mean s_i(x) of each task's test samples to each prototype) and
        Fig. 6 (share of each task's test samples whose selected prompts come from each learned
        task, top-1 and top-k), plus per-task selection accuracy (top-1 = own task)."""
        if not self.num_tasks or not test_sets:
            return StageAnalysis()
        cols = list(learned_tasks) if len(learned_tasks) == self.num_tasks else self._task_names()
        k = min(self.args.top_k, self.num_tasks)
        similarity, top1, topk, accuracy = [], [], [], []
        for name, samples in test_sets.items():
            s = torch.cat(
                [
                    self.select(samples[start : start + 256]).similarity
                    for start in range(0, len(samples), 256)
                ]
            ).cpu()
            ranked = s.argsort(dim=1, descending=True)
            first = F.one_hot(ranked[:, 0], self.num_tasks).float()  # [n, T]
            in_topk = F.one_hot(ranked[:, :k], self.num_tasks).amax(dim=1).float()
            similarity.append(s.mean(dim=0).tolist())
            top1.append(first.mean(dim=0).tolist())
            topk.append(in_topk.mean(dim=0).tolist())
            own = cols.index(name) if name in cols else None
            accuracy.append(
                [None, None]
                if own is None
                else [float(first[:, own].mean()), float(in_topk[:, own].mean())]
            )
        rows = list(test_sets)
        note = "" if self.args.selection else " (selection off: every prompt is used)"
        matrices = {
            "prototype_similarity": analysis_matrix(
                "Mean similarity s_i(x) of each task's test samples to each learned prototype",
                "test task",
                "prototype of task",
                rows,
                cols,
                similarity,
            ),
            "selection_top1": analysis_matrix(
                f"Share of test samples whose top-1 selected prompts are each task's{note}",
                "test task",
                "selected prompts of task",
                rows,
                cols,
                top1,
            ),
            "selection_topk": analysis_matrix(
                f"Share of test samples whose top-{k} selected prompts include each task's{note}",
                "test task",
                "selected prompts of task",
                rows,
                cols,
                topk,
            ),
            "selection_accuracy": analysis_matrix(
                "Selection accuracy: share of test samples whose own task's prompts are selected",
                "test task",
                "selection",
                rows,
                ["top-1", f"top-{k}"],
                accuracy,
            ),
        }
        scored = [a for a in accuracy if a[0] is not None]
        summary = {}
        if scored:
            summary = {
                "selection_accuracy_top1": sum(a[0] for a in scored) / len(scored),
                "selection_accuracy_topk": sum(a[1] for a in scored) / len(scored),
                "selection_k": k,
            }
        return StageAnalysis(matrices, summary)


def _similarity_rows(entries: list[dict[str, Any]], numbered: bool) -> list[str]:
    width = max((len(e["task"]) for e in entries), default=4)
    out = []
    for i, e in enumerate(entries, start=1):
        lead = f"  {i}. " if numbered else "     "
        image = "-" if e.get("image_cosine") is None else f"{e['image_cosine']:.3f}"
        text = "-" if e.get("text_cosine") is None else f"{e['text_cosine']:.3f}"
        out.append(
            f"{lead}{e['task']:<{width}}  s = {e['similarity']:.3f}  (image {image}, text {text})"
        )
    return out
