"""Parameter accounting: exact counts of every method on the current backbone, and the papers'
configuration (LLaVA-1.5-7B + CLIP-L/14-336) computed without weights.

On the current backbone a method is counted as the runner counts it (`mcit.runner.
count_parameters`: every distinct parameter of the method module, the backbone included) in
its training state at a given stage; frozen helpers kept outside the module (a guidance
CLIP) are counted separately.

For LLaVA-1.5-7B the model is built from a hand-written `LlavaConfig` on the `meta` device
(shapes, no storage) and each method named by the paper figures (`mcit.bench.paper`) is
attached through the registry with its default arguments (the papers' settings) and replayed
to its training state at the paper's number of tasks. A method that cannot be built there (its
guidance encoder loads CLIP weights from a directory) declares its count instead
(`ContinualMethod.parameters_by_formula`), checked against the built method on the tiny
backbone by the contract tests.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import (
    CLIPConfig,
    CLIPModel,
    CLIPTextConfig,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
)

from mcit.bench.paper import paper_figures
from mcit.bench.replay import TaskReplay
from mcit.config import BackboneConfig
from mcit.methods.base import (
    ContinualMethod,
    ModelShapes,
    ParameterFormula,
    build_method,
    method_class,
    method_names,
)
from mcit.models.backbone import Backbone
from mcit.models.guidance import GuidanceEncoder
from mcit.runner import count_parameters


@dataclass
class ParameterCount:
    """A method's parameters in its training state: what trains, everything it holds (backbone
    included), the backbone alone, and frozen helpers outside the module."""

    trainable: int
    total: int
    backbone: int
    helpers: int  # e.g. the guidance CLIP: frozen, not part of the method's state
    bytes: int  # memory of the method module's parameters and buffers
    helpers_bytes: int = 0  # memory of the helpers' parameters and buffers

    @property
    def added(self) -> int:
        """What the method adds to the backbone (adapters, prompts, old tasks' blocks)."""
        return self.total - self.backbone

    @property
    def trainable_pct(self) -> float:
        return 100.0 * self.trainable / self.total

    def to_dict(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self),
            "added": self.added,
            "trainable_pct": self.trainable_pct,
        }


def tensor_bytes(module: nn.Module) -> int:
    """Bytes of a module's distinct parameters and buffers (shared tensors counted once)."""
    seen: set[int] = set()
    total = 0
    for t in [*module.parameters(), *module.buffers()]:
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


def guidance_encoders(method: ContinualMethod) -> list[GuidanceEncoder]:
    """The frozen guidance encoders a method keeps as plain attributes (CONTRIBUTING, point 3)."""
    return [v for v in vars(method).values() if isinstance(v, GuidanceEncoder)]


def count_method(method: ContinualMethod, backbone_parameters: int) -> ParameterCount:
    trainable, total = count_parameters(method)
    encoders = [encoder.model for encoder in guidance_encoders(method)]
    helpers = sum(p.numel() for model in encoders for p in model.parameters())
    return ParameterCount(
        trainable,
        total,
        backbone_parameters,
        helpers,
        tensor_bytes(method),
        sum(tensor_bytes(model) for model in encoders),
    )


# ---------------------------------------------------------------------------- LLaVA-1.5-7B
def clip_l_336_vision_config() -> CLIPVisionConfig:
    """CLIP ViT-L/14 at 336 px: 24 layers, width 1024, 16 heads, patch 14."""
    return CLIPVisionConfig(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=336,
        patch_size=14,
        projection_dim=768,
        hidden_act="quick_gelu",
    )


def clip_l_336_config() -> CLIPConfig:
    """The whole CLIP-L/14-336 (both towers and projections), as a guidance encoder."""
    text = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        max_position_embeddings=77,
        projection_dim=768,
        hidden_act="quick_gelu",
    )
    return CLIPConfig(
        text_config=text.to_dict(),
        vision_config=clip_l_336_vision_config().to_dict(),
        projection_dim=768,
    )


def llava_15_7b_config() -> LlavaConfig:
    """llava-1.5-7b as llava-hf lays it out: CLIP-L/14-336 vision tower (second-to-last layer,
    CLS dropped), 2-layer GELU MLP projector 1024 → 4096 → 4096, Llama-2-7B LM (Vicuna-7B v1.5:
    32 layers, width 4096, MLP 11008, vocabulary padded to 32064), untied LM head."""
    lm = LlamaConfig(
        vocab_size=32064,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
    )
    return LlavaConfig(
        vision_config=clip_l_336_vision_config().to_dict(),
        text_config=lm.to_dict(),
        image_token_index=32000,
        projector_hidden_act="gelu",
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=576,
        tie_word_embeddings=False,
    )


def meta_llava_backbone() -> Backbone:
    """LLaVA-1.5-7B on the meta device wrapped as a Backbone (no tokenizer, no CLIP directory):
    enough for methods that only add modules to the LM."""
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(llava_15_7b_config())
    backbone = Backbone(model, None, None, BackboneConfig(name="hf"), clip_path=None)
    backbone.freeze()
    return backbone


def _numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _variant(label: str, trainable: int, denominator: int) -> dict[str, Any]:
    return {
        "label": label,
        "trainable": trainable,
        "denominator": denominator,
        "pct": 100.0 * trainable / denominator,
    }


def _formula_variants(
    count: ParameterFormula, base: int, clip: int, tasks: int
) -> list[dict[str, Any]]:
    variants = [
        _variant(
            f"LLaVA-1.5-7B + the method's tensors after {tasks} tasks (mcit's definition)",
            count.trainable,
            base + count.added,
        ),
        _variant("LLaVA-1.5-7B alone", count.trainable, base),
    ]
    if count.guidance_encoder:
        variants += [
            _variant(
                "LLaVA-1.5-7B + CLIP-L/336 guidance encoder + the first task's tensors",
                count.trainable,
                base + clip + count.first_task,
            ),
            _variant(
                f"LLaVA-1.5-7B + CLIP-L/336 guidance encoder + the method's tensors after "
                f"{tasks} tasks",
                count.trainable,
                base + clip + count.added,
            ),
        ]
    return variants


def paper_accounting(
    methods: tuple[str, ...] | None = None, tasks: int | None = None
) -> dict[str, Any]:
    """Trainable % of each method on LLaVA-1.5-7B (+ CLIP-L/336 for guidance) at task `tasks`,
    under several denominators, beside the paper's figures where it gives one (by default the
    methods and number of tasks of `mcit.bench.paper`)."""
    paper = paper_figures()
    methods = paper.accounting_methods if methods is None else methods
    tasks = paper.accounting_tasks if tasks is None else tasks
    base_model = meta_llava_backbone()
    base = _numel(base_model)
    parts = {
        "vision_tower": _numel(base_model.vision_tower),
        "projector": _numel(base_model.projector),
        "language_model": _numel(base_model.language_model),
        "lm_head": _numel(base_model.model.lm_head),
    }
    with torch.device("meta"):
        clip = _numel(CLIPModel(clip_l_336_config()))
    shapes = ModelShapes(
        base_model.hidden_size, clip_l_336_config().projection_dim, base_model.num_layers
    )
    known = set(method_names())
    out: dict[str, Any] = {}
    for name in methods:
        if name not in known:
            continue
        cls, args = method_class(name)
        entry: dict[str, Any] = {"tasks": tasks, "args": dataclasses.asdict(args)}
        formula = cls.parameters_by_formula(args, shapes, tasks)
        if formula is not None:
            trainable, added = formula.trainable, formula.added
            entry["counted_by"] = f"formula: {formula.formula} (CLIP-L/336 feature width)"
            entry["variants"] = _formula_variants(formula, base, clip, tasks)
        else:
            backbone = meta_llava_backbone()
            with torch.device("meta"):
                method = build_method(name, backbone)
                TaskReplay(method).advance(tasks, leave_last_open=True)
            trainable, total = count_parameters(method)
            added = total - base
            entry["counted_by"] = "registry, meta device"
            variants = [
                _variant(
                    f"LLaVA-1.5-7B + the method's tensors at task {tasks} (mcit's definition)",
                    trainable,
                    total,
                ),
                _variant("LLaVA-1.5-7B alone", trainable, base),
            ]
            if not any(p.requires_grad for p in backbone.projector.parameters()):
                variants.append(
                    _variant(
                        "with LLaVA's projector trained beside the adapters, as CoIN's LLaVA "
                        "scripts do (--mm_projector_lr)",
                        trainable + parts["projector"],
                        total,
                    )
                )
            entry["variants"] = variants
        entry["trainable"] = trainable
        entry["added"] = added
        entry["total"] = base + added
        entry["trainable_pct"] = 100.0 * trainable / (base + added)
        printed = paper.trainable_pct.get(name)
        entry["paper_pct"] = printed
        if printed is not None:
            nearest = min(entry["variants"], key=lambda v: abs(v["pct"] - printed))
            entry["nearest_variant"] = nearest["label"]
            entry["nearest_matches_paper"] = round(nearest["pct"], 2) == printed
        out[name] = entry
    return {
        "backbone": "LLaVA-1.5-7B (CLIP-L/14-336 vision, 2-layer MLP projector, Llama-2-7B LM), "
        "built on the meta device",
        "base_parameters": {**parts, "total": base},
        "guidance_clip_parameters": clip,
        "methods": out,
    }
