"""The embedded default backbone: a tiny LLaVA that mcit builds and pre-trains itself.

Two stages, as LLaVA-1.5 was built on a pre-trained CLIP:
1. a tiny CLIP (ViT + text transformer) trained contrastively on the generic synthetic
   caption corpus; it is saved as a local CLIP directory and is also the guidance encoder
   later methods use, as CLIP-L is in the papers;
2. a LLaVA (that CLIP's vision tower, an MLP projector, a small Llama LM) trained on the generic
   instruction mixture: the skills the eight coin-mini tasks need (colours, shapes, counting,
   positions with coordinates, reading rendered words, choosing among listed options) in
   phrasings and answer formats that differ from the tasks' own. The LM is trained from
   scratch here, so this one stage does both alignment and instruction tuning, with every
   weight trainable.

The result is a plain llava-hf directory, cached under the user cache folder and keyed by a
hash of this config, so the rest of mcit loads it exactly like a real LLaVA-1.5 checkpoint.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import (
    CLIPConfig,
    CLIPModel,
    CLIPTextConfig,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    get_scheduler,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from mcit.data.sample import Sample
from mcit.models.tokenizer import MEDIA_TOKENS, train_tokenizer

# Bump when the pre-training recipe or the generic corpus changes meaning: it is part of the key.
RECIPE_VERSION = "tiny-1"
CAPTION_INSTRUCTION = "Describe the picture."


@dataclass
class TinyConfig:
    seed: int = 0
    image_size: int = 64
    patch_size: int = 16  # 16 image tokens: 64 cost 2.5x the step time on 2 cores (measured)
    vision_hidden: int = 128
    vision_layers: int = 4
    vision_heads: int = 4
    text_hidden: int = 128  # CLIP text tower
    text_layers: int = 3
    projection_dim: int = 128
    lm_hidden: int = 256
    lm_layers: int = 4
    lm_heads: int = 4
    lm_intermediate: int = 768
    vocab_size: int = 2048
    clip_samples: int = 8000
    clip_steps: int = 160
    clip_batch: int = 128
    clip_lr: float = 1e-3
    llava_samples: int = 16000
    llava_steps: int = 450
    llava_batch: int = 32
    llava_lr: float = 1e-3
    report_samples: int = 40  # held-out questions per skill (and 4x as many captions)

    def key(self) -> str:
        from mcit.data.builtin import source_hash

        # The generic corpus and the recipe are code: their source is part of the key.
        code = source_hash("data/synthetic", "models/tiny.py", "models/tokenizer.py")
        blob = json.dumps({"recipe": RECIPE_VERSION, "code": code, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def cache_root() -> Path:
    """mcit's cache folder: $MCIT_CACHE, else $XDG_CACHE_HOME/mcit, else ~/.cache/mcit."""
    if os.environ.get("MCIT_CACHE"):
        return Path(os.environ["MCIT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mcit"


def tiny_dir(config: TinyConfig) -> Path:
    return cache_root() / "backbones" / f"tiny-{config.key()}"


@contextlib.contextmanager
def _file_lock(path: Path):
    """Exclusive lock so that several processes (torchrun ranks) pre-train only once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_tiny_backbone(
    config: TinyConfig | None = None, progress: bool = True
) -> tuple[Path, Path]:
    """Return (llava_dir, clip_dir) of the cached tiny backbone, pre-training it first if needed."""
    config = config or TinyConfig()
    root = tiny_dir(config)
    if (root / "DONE").is_file():
        return root / "llava", root / "clip"
    with _file_lock(root.parent / f".{root.name}.lock"):
        if not (root / "DONE").is_file():
            pretrain_tiny(config, root, progress=progress)
    return root / "llava", root / "clip"


# ---------------------------------------------------------------------------- building
def _clip_config(config: TinyConfig, tokenizer) -> CLIPConfig:
    vision = CLIPVisionConfig(
        hidden_size=config.vision_hidden,
        intermediate_size=4 * config.vision_hidden,
        num_hidden_layers=config.vision_layers,
        num_attention_heads=config.vision_heads,
        image_size=config.image_size,
        patch_size=config.patch_size,
        projection_dim=config.projection_dim,
    )
    text = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.text_hidden,
        intermediate_size=4 * config.text_hidden,
        num_hidden_layers=config.text_layers,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=config.projection_dim,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return CLIPConfig(
        text_config=text.to_dict(),
        vision_config=vision.to_dict(),
        projection_dim=config.projection_dim,
    )


def _llava_config(config: TinyConfig, tokenizer, vision_config: CLIPVisionConfig) -> LlavaConfig:
    lm = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.lm_hidden,
        intermediate_size=config.lm_intermediate,
        num_hidden_layers=config.lm_layers,
        num_attention_heads=config.lm_heads,
        num_key_value_heads=config.lm_heads,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return LlavaConfig(
        vision_config=vision_config.to_dict(),
        text_config=lm.to_dict(),
        image_token_index=tokenizer.convert_tokens_to_ids(MEDIA_TOKENS["image"]),
        # The last vision layer's output, not the second-to-last: with -2 the last layer gets no
        # gradient, which breaks DDP unless it is frozen (measured).
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        image_seq_length=(config.image_size // config.patch_size) ** 2,
        tie_word_embeddings=False,
    )


def _image_processor(config: TinyConfig) -> CLIPImageProcessorPil:
    size = config.image_size
    return CLIPImageProcessorPil(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}
    )


def _images_to_tensor(images, processor: CLIPImageProcessorPil) -> torch.Tensor:
    """Normalised pixel tensors, in chunks so the PIL → numpy step stays small."""
    out = []
    for start in range(0, len(images), 512):
        chunk = [im.convert("RGB") for im in images[start : start + 512]]
        out.append(processor(images=chunk, return_tensors="pt")["pixel_values"].to(torch.float16))
    return torch.cat(out)


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------- pre-training
def pretrain_tiny(config: TinyConfig, out: Path, progress: bool = True) -> None:
    """Build the tokenizer, pre-train CLIP, then LLaVA, and save both under `out` atomically."""
    from mcit.data.synthetic.coin_mini import corpus_text
    from mcit.data.synthetic.pretrain import pretrain_caption_views, pretrain_instructions

    started = time.time()
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _seed_all(config.seed)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    say = tqdm.write if progress else (lambda *_: None)
    say(f"[mcit] pre-training the tiny backbone {out.name} (once; cached in {out.parent})")
    tokenizer = train_tokenizer(corpus_text(seed=config.seed), vocab_size=config.vocab_size)
    processor = _image_processor(config)

    # Stage 1: CLIP, contrastive on (image, caption) pairs.
    captions = pretrain_caption_views(
        config.clip_samples, seed=config.seed + 1, image_size=config.image_size
    )
    clip = CLIPModel(_clip_config(config, tokenizer))
    clip_pixels = _images_to_tensor([im for im, _ in captions], processor)
    clip_views = [views for _, views in captions]
    clip_loss = _train_clip(clip, tokenizer, clip_pixels, clip_views, config, progress)
    clip_dir = tmp / "clip"
    clip.save_pretrained(clip_dir)
    tokenizer.save_pretrained(clip_dir)
    processor.save_pretrained(clip_dir)

    # Stage 2: LLaVA with CLIP's vision tower, on the generic instruction mixture.
    llava = LlavaForConditionalGeneration(
        _llava_config(config, tokenizer, clip.config.vision_config)
    )
    llava.model.vision_tower.load_state_dict(clip.vision_model.state_dict(), strict=False)
    del clip
    records = pretrain_instructions(
        config.llava_samples, seed=config.seed + 2, image_size=config.image_size
    )
    # LLaVA's alignment data: the same pictures' full captions, asked for as a description.
    records += [
        (im, [(CAPTION_INSTRUCTION, views[0])])
        for im, views in captions[: config.llava_samples // 4]
    ]
    llava_loss = _train_llava(llava, tokenizer, processor, records, config, progress)
    llava_dir = tmp / "llava"
    llava.save_pretrained(llava_dir)
    tokenizer.save_pretrained(llava_dir)
    processor.save_pretrained(llava_dir)

    report = {
        "config": asdict(config),
        "recipe": RECIPE_VERSION,
        "clip_final_loss": clip_loss,
        "llava_final_loss": llava_loss,
        "seconds": round(time.time() - started, 1),
    }
    report["held_out"] = evaluate_base(llava_dir, clip_dir, config, progress=progress)
    (tmp / "pretrain_report.json").write_text(json.dumps(report, indent=2))
    (tmp / "DONE").write_text(RECIPE_VERSION)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    say(f"[mcit] tiny backbone ready in {report['seconds']} s: {out}")


def _cosine_lr(optimizer, steps: int):
    return get_scheduler(
        "cosine", optimizer, num_warmup_steps=max(1, steps // 20), num_training_steps=steps
    )


def _encode_texts(tokenizer, texts: list[str], max_len: int) -> list[list[int]]:
    """Token ids ending in EOS (CLIP pools at the first EOS under a causal mask)."""
    rows = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [r[: max_len - 1] + [tokenizer.eos_token_id] for r in rows]


def _pad_right(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def _train_clip(
    clip: CLIPModel,
    tokenizer,
    pixels: torch.Tensor,
    views: list[list[str]],
    config: TinyConfig,
    progress: bool,
) -> float:
    """Contrastive training; each step pairs every sampled image with one of its caption views,
    drawn at random."""
    clip.train()
    optimizer = torch.optim.AdamW(clip.parameters(), lr=config.clip_lr, weight_decay=0.05)
    scheduler = _cosine_lr(optimizer, config.clip_steps)
    generator = torch.Generator().manual_seed(config.seed)
    # Encoded once, not every step.
    encoded = [_encode_texts(tokenizer, texts, 77) for texts in views]
    bar = tqdm(range(config.clip_steps), desc="pretrain CLIP", disable=not progress, mininterval=2)
    loss_value = math.nan
    for _ in bar:
        idx = torch.randint(len(views), (config.clip_batch,), generator=generator)
        picks = torch.randint(1 << 30, (config.clip_batch,), generator=generator).tolist()
        rows = [encoded[i][p % len(encoded[i])] for i, p in zip(idx.tolist(), picks, strict=True)]
        ids, mask = _pad_right(rows, tokenizer.pad_token_id)
        out = clip(
            input_ids=ids, attention_mask=mask, pixel_values=pixels[idx].float(), return_loss=True
        )
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(clip.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = (
            0.9 * loss_value + 0.1 * out.loss.item()
            if not math.isnan(loss_value)
            else out.loss.item()
        )
        bar.set_postfix(loss=f"{loss_value:.3f}")
    clip.eval()
    return loss_value


def _memory_samples(
    turn_lists: list[list[tuple[str, str]]], prefix: str, metric: str = "exact", offset: int = 0
) -> list[Sample]:
    """Samples whose images live in memory, addressed `mem:<index>` (see `_MemoryImages`)."""
    return [
        Sample(
            id=f"{prefix}-{i}",
            task=prefix,
            turns=turns,
            references=[turns[-1][1]],
            metric=metric,
            media={"image": f"mem:{offset + i}"},
        )
        for i, turns in enumerate(turn_lists)
    ]


class _MemoryImages:
    """Stands in for a backbone's pixel cache: in-memory images addressed as `mem:<index>`."""

    def __init__(self, pixels: torch.Tensor):
        self.pixels = pixels

    def __call__(self, paths: list[str]) -> torch.Tensor:
        return torch.stack([self.pixels[int(p[4:])] for p in paths]).float()


def _length_buckets(
    lengths: list[int], batch_size: int, generator: torch.Generator, group: int = 8
):
    """Endless batches of similar length: draw `group` batches' worth of random samples, sort
    them by length, cut into batches, and yield those in random order. The generic mixture
    mixes one- and three-turn samples, and padding to the longest cost 2x (measured)."""
    while True:
        pool = torch.randint(len(lengths), (batch_size * group,), generator=generator).tolist()
        pool.sort(key=lambda i: lengths[i])
        chunks = [pool[k : k + batch_size] for k in range(0, len(pool), batch_size)]
        for j in torch.randperm(len(chunks), generator=generator).tolist():
            yield chunks[j]


def _train_llava(llava, tokenizer, processor, records, config: TinyConfig, progress: bool) -> float:
    from mcit.data.collate import Collator
    from mcit.models.backbone import Backbone, BackboneConfig, ChatFormat

    chat = ChatFormat(system="")
    backbone = Backbone(
        llava, tokenizer, processor, BackboneConfig(name="tiny", chat=chat), clip_path=None
    )
    backbone.pixel_values = _MemoryImages(_images_to_tensor([im for im, _ in records], processor))  # type: ignore[method-assign]
    samples = _memory_samples([turns for _, turns in records], "pretrain")
    collate = Collator(backbone)
    llava.train()
    for p in llava.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(llava.parameters(), lr=config.llava_lr, weight_decay=0.0)
    scheduler = _cosine_lr(optimizer, config.llava_steps)
    generator = torch.Generator().manual_seed(config.seed + 7)
    lengths = [sum(len(u) + len(a) for u, a in s.turns) for s in samples]
    batches = _length_buckets(lengths, config.llava_batch, generator)
    bar = tqdm(
        range(config.llava_steps), desc="pretrain LLaVA", disable=not progress, mininterval=2
    )
    loss_value = math.nan
    for _ in bar:
        batch = collate([samples[i] for i in next(batches)])
        embeds = backbone.embed(batch.input_ids, batch.pixel_values)
        loss = backbone.lm_loss(backbone.logits(embeds, batch.attention_mask), batch.labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(llava.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = (
            0.9 * loss_value + 0.1 * loss.item() if not math.isnan(loss_value) else loss.item()
        )
        bar.set_postfix(loss=f"{loss_value:.3f}")
    llava.eval()
    return loss_value


@torch.no_grad()
def evaluate_base(
    llava_dir: Path, clip_dir: Path, config: TinyConfig, progress: bool = True
) -> dict:
    """How well the pre-trained base answers and describes images it has never seen.

    Fresh images from a seed no training used, skill by skill: exact match of its full-sentence
    answers to `report_samples` questions per skill of the generic mixture (and, for "where",
    the share of boxes with IoU > 0.5), and CIDEr of its captions ("Describe the picture.")
    against the generator's caption.
    """
    from mcit.data.collate import Collator
    from mcit.data.synthetic.pretrain import pretrain_captions, skill_probe
    from mcit.evaluation.scorers import score_predictions
    from mcit.models.backbone import BackboneConfig, ChatFormat, load_llava_dir

    backbone = load_llava_dir(
        llava_dir, BackboneConfig(name="tiny"), clip_dir=str(clip_dir), chat=ChatFormat(system="")
    )
    n = config.report_samples
    held_seed = config.seed + 10_000
    probe = skill_probe(n, seed=held_seed, image_size=config.image_size)
    captions = pretrain_captions(4 * n, seed=held_seed + 1, image_size=config.image_size)
    qa = _memory_samples([[(user, answer)] for _, _, user, answer in probe], "held-out")
    cap = _memory_samples(
        [[(CAPTION_INSTRUCTION, text)] for _, text in captions],
        "held-out",
        "cider",
        offset=len(probe),
    )
    backbone.pixel_values = _MemoryImages(
        _images_to_tensor(
            [im for _, im, _, _ in probe] + [im for im, _ in captions], backbone.image_processor
        )
    )  # type: ignore[method-assign]
    collate = Collator(backbone)

    def predict(samples: list[Sample], name: str) -> list[str]:
        out = []
        for start in tqdm(
            range(0, len(samples), 50), desc=f"held-out {name}", disable=not progress, mininterval=2
        ):
            batch = collate(samples[start : start + 50], with_answer=False)
            embeds = backbone.embed(batch.input_ids, batch.pixel_values)
            out += backbone.generate(embeds, batch.attention_mask, max_new_tokens=48)
        return out

    answers = predict(qa, "skills")
    exact = score_predictions("exact", answers, [s.references for s in qa])
    skills: dict[str, list[float]] = {}
    for (skill, *_), score in zip(probe, exact, strict=True):
        skills.setdefault(skill, []).append(score)
    where = [
        (p, s.references)
        for (skill, *_), p, s in zip(probe, answers, qa, strict=True)
        if skill == "where"
    ]
    iou = score_predictions("iou", [p for p, _ in where], [r for _, r in where]) if where else []
    captions_pred = predict(cap, "captions")
    cider = score_predictions("cider", captions_pred, [s.references for s in cap])
    per_skill = {k: round(100 * sum(v) / len(v), 1) for k, v in sorted(skills.items())}
    return {
        "skills_exact": per_skill,
        "skills_mean": round(sum(per_skill.values()) / len(per_skill), 2),
        "where_iou50": round(100 * sum(iou) / len(iou), 1) if iou else None,
        "captions_cider": round(100 * sum(cider) / len(cider), 2),
        "examples": [
            {"skill": skill, "question": user, "prediction": p, "reference": answer}
            for (skill, _, user, answer), p in list(zip(probe, answers, strict=True))[::n][:24]
        ]
        + [
            {"skill": "caption", "prediction": p, "reference": s.references[0]}
            for s, p in list(zip(cap, captions_pred, strict=True))[:3]
        ],
    }
