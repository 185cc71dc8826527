"""Build a tiny base: the recipe's stages, each saved as it finishes, resumable at any point.

Stages, in order (each leaves its result under `<out>/.build/`):
1. `tokenizer` — a byte-level BPE trained on the generic corpus;
2. `clip` — the tiny CLIP, contrastive on (picture, caption view) pairs (the guidance encoder);
   then `audio` — the audio encoder, contrastive against CLIP's frozen text tower on synthesised
   sounds (`mcit.pretrain.audio`);
3. `features` — the generic instruction mixture's conversations, and, for a frozen tower, its
   features of every picture (computed once, in chunks; LLaVA-1.5 also keeps its tower frozen);
4. `llava` — projector + LM (and the tower when it is CLIP's ViT) on the mixture; a checkpoint
   (weights, AdamW, schedule, step) every `checkpoint_minutes`, so a kill loses minutes at most;
   stages 3 and 4 run on `device` (a GPU where one is at hand; the other stages take minutes on
   CPU cores);
5. `probe` — the held-out per-skill probe (`mcit.pretrain.probe`), then the model card.

The finished base is `<out>/llava`, `<out>/clip` and `<out>/audio` (llava-hf, CLIP and Whisper
encoder directories, safetensors),
`<out>/model_card.json` and `<out>/MODEL_CARD.md`; `<out>/DONE` marks it complete. Batches are a
pure function of the step (not of a generator's history), so a resumed build draws exactly the
batches an uninterrupted one would, and gives the same weights.
"""

from __future__ import annotations

import hashlib
import math
import os
import platform
import random
import shutil
import subprocess
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import (
    AutoTokenizer,
    CLIPModel,
    LlavaForConditionalGeneration,
    get_scheduler,
)

from mcit.config import BackboneConfig, ChatFormat
from mcit.data.collate import Collator
from mcit.data.sample import Sample
from mcit.files import atomic_dir, atomic_path, read_json, write_json_atomic, write_text_atomic
from mcit.models.backbone import Backbone
from mcit.models.efficientnet_lite import imagenet_weights_path, load_imagenet_weights
from mcit.models.tiny import (
    CAPTION_INSTRUCTION,
    RECIPE_VERSION,
    TinyConfig,
    clip_config,
    clip_image_processor,
    llava_config,
    llava_image_processor,
    vision_config,
)
from mcit.models.tokenizer import train_tokenizer
from mcit.train.trainer import optimizer_step

FEATURE_CHUNK = 2048  # pictures per saved feature chunk
LENGTH_GROUP = 8  # batches drawn together and sorted by length (padding cost 2x, measured)


class BuildError(RuntimeError):
    """A build folder that cannot be resumed as asked; the message names it."""


def recipe_code_hash() -> str:
    """Hash of the sources that decide what a build produces (generators, recipe, models)."""
    from mcit.data.builtin import source_hash

    return source_hash(
        "data/synthetic", "pretrain", "models/tiny.py", "models/tokenizer.py",
        "models/efficientnet_lite.py", "models/backbone.py", "data/collate.py",
        "models/audio.py", "models/media.py", "data/micl_mini/sounds.py",
    )  # fmt: skip


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _say(progress: bool):
    return tqdm.write if progress else (lambda *_: None)


class BuildState:
    """`<out>/.build/state.json`: the config, which stages are done, and timings."""

    def __init__(self, work: Path, config: TinyConfig, resume: bool):
        self.path = work / "state.json"
        wanted = {"recipe_version": RECIPE_VERSION, "config": asdict(config)}
        if self.path.is_file():
            saved = read_json(self.path, BuildError)
            if not resume:
                raise BuildError(
                    f"{work}: an unfinished build is there; pass --resume to continue it "
                    "or remove the folder to start again"
                )
            if {k: saved.get(k) for k in wanted} != wanted:
                changed = sorted(
                    k for k in wanted["config"] if saved["config"].get(k) != wanted["config"][k]
                )
                raise BuildError(
                    f"{self.path}: that build used another recipe (differs in {changed}); "
                    "resume it with the same recipe, or remove the folder"
                )
            self.data = saved
        else:
            self.data = {**wanted, "done": {}, "seconds": {}}
            self.save()

    def done(self, stage: str) -> bool:
        return stage in self.data["done"]

    def finish(self, stage: str, seconds: float, device: str | None = None, **info) -> None:
        self.data["done"][stage] = info
        self.add_seconds(stage, seconds, device)

    def add_seconds(self, stage: str, seconds: float, device: str | None = None) -> None:
        self.data["seconds"][stage] = round(self.data["seconds"].get(stage, 0.0) + seconds, 1)
        if device is not None:  # a stage resumed elsewhere ran on each of its devices
            ran_on = self.data.setdefault("devices", {}).setdefault(stage, [])
            if device not in ran_on:
                ran_on.append(device)
        self.save()

    def devices(self, stage: str) -> str:
        """Where `stage` ran, e.g. `cpu` or `cuda:0 (NVIDIA H200), cpu`."""
        return ", ".join(self.data.get("devices", {}).get(stage, ["cpu"]))

    def save(self) -> None:
        write_json_atomic(self.path, self.data)


def build_base(
    config: TinyConfig,
    out: Path,
    *,
    resume: bool = False,
    progress: bool = True,
    checkpoint_minutes: float = 5.0,
    recipe: str | None = None,
    max_stage_seconds: float | None = None,
    device: str | torch.device = "cpu",
) -> Path:
    """Build the base `config` describes into `out` (see the module doc) and return `out`.

    `max_stage_seconds` stops the LLaVA stage after that long (a checkpoint is written): the
    build is then unfinished and continues with `resume=True`. Returns `out` either way; `DONE`
    tells which. `device` runs the features and LLaVA stages (a CUDA device: the same batches,
    not bit-identical weights to a CPU build; the model card records where each stage ran)."""
    out = Path(out)
    device = torch.device(device)
    if (out / "DONE").is_file():
        if not (out / "audio").is_dir():
            add_audio_stage(config, out, progress)
        return out
    work = out / ".build"
    work.mkdir(parents=True, exist_ok=True)
    state = BuildState(work, config, resume)
    say = _say(progress)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    say(f"[mcit] building the tiny base in {out} (recipe {recipe or 'custom'}); stages are saved")

    if not state.done("tokenizer"):
        started = time.time()
        from mcit.data.synthetic.coin_mini import corpus_text

        tokenizer = train_tokenizer(
            corpus_text(config.seed, config.answer_style, config.short_answers),
            vocab_size=config.vocab_size,
        )
        with atomic_dir(work / "tokenizer") as tmp:
            tokenizer.save_pretrained(tmp)
        state.finish("tokenizer", time.time() - started, vocab=len(tokenizer))
    tokenizer = AutoTokenizer.from_pretrained(work / "tokenizer")

    if not state.done("clip"):
        started = time.time()
        loss = _build_clip(config, tokenizer, work / "clip", progress)
        state.finish("clip", time.time() - started, final_loss=loss)

    if not state.done("audio"):
        from mcit.pretrain.audio import build_audio_encoder

        record = build_audio_encoder(config, work / "clip", work / "audio", progress)
        state.finish("audio", record.pop("seconds"), **record)

    if not state.done("features"):
        started = time.time()
        state.add_seconds("features", 0.0, device_name(device))  # a resumed stage: each device
        _build_features(config, tokenizer, work, progress, device)
        digest = hashlib.sha256((work / "conversations.json").read_bytes()).hexdigest()
        state.finish("features", time.time() - started, conversations_sha256=digest)

    if not state.done("llava"):
        finished = _train_llava(
            config, tokenizer, work, state, progress, checkpoint_minutes, max_stage_seconds, device
        )
        if not finished:
            say(f"[mcit] stopped after the time limit; continue with --resume ({out})")
            return out

    if not state.done("probe"):
        started = time.time()
        from mcit.pretrain.probe import probe_base

        report = probe_base(work / "llava", work / "clip", config, progress=progress)
        write_json_atomic(work / "probe.json", report)
        state.finish("probe", time.time() - started)

    _finish(config, out, work, state, recipe)
    say(f"[mcit] tiny base ready: {out}")
    return out


# ---------------------------------------------------------------------------- stage 2: CLIP
def _build_clip(config: TinyConfig, tokenizer, target: Path, progress: bool) -> float:
    from mcit.data.synthetic.pretrain import pretrain_caption_views

    _seed_all(config.seed)
    processor = clip_image_processor(config)
    captions = pretrain_caption_views(
        config.clip_samples, seed=config.seed + 1, image_size=config.image_size
    )
    clip = CLIPModel(clip_config(config, tokenizer))
    pixels = _images_to_tensor([im for im, _ in captions], processor)
    loss = _train_clip(clip, tokenizer, pixels, [v for _, v in captions], config, progress)
    with atomic_dir(target) as tmp:
        clip.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        processor.save_pretrained(tmp)
    return loss


def _images_to_tensor(images, processor) -> torch.Tensor:
    """Normalised pixel tensors (float16), in chunks so the PIL → numpy step stays small."""
    out = []
    for start in range(0, len(images), 512):
        chunk = [im.convert("RGB") for im in images[start : start + 512]]
        out.append(processor(images=chunk, return_tensors="pt")["pixel_values"].to(torch.float16))
    return torch.cat(out)


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


def _cosine(optimizer, steps: int):
    return get_scheduler(
        "cosine", optimizer, num_warmup_steps=max(1, steps // 20), num_training_steps=steps
    )


def _train_clip(clip, tokenizer, pixels, views, config: TinyConfig, progress: bool) -> float:
    """Contrastive training; each step pairs every sampled image with one of its caption views,
    drawn at random."""
    clip.train()
    params = list(clip.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.clip_lr, weight_decay=0.05)
    scheduler = _cosine(optimizer, config.clip_steps)
    generator = torch.Generator().manual_seed(config.seed)
    encoded = [_encode_texts(tokenizer, texts, 77) for texts in views]  # once, not every step
    bar = tqdm(range(config.clip_steps), desc="pretrain CLIP", disable=not progress, mininterval=2)
    smoothed = math.nan
    for _ in bar:
        idx = torch.randint(len(views), (config.clip_batch,), generator=generator)
        picks = torch.randint(1 << 30, (config.clip_batch,), generator=generator).tolist()
        rows = [encoded[i][p % len(encoded[i])] for i, p in zip(idx.tolist(), picks, strict=True)]
        ids, mask = _pad_right(rows, tokenizer.pad_token_id)
        out = clip(
            input_ids=ids, attention_mask=mask, pixel_values=pixels[idx].float(), return_loss=True
        )
        out.loss.backward()
        optimizer_step(optimizer, scheduler, params, 1.0)
        value = out.loss.item()
        smoothed = value if math.isnan(smoothed) else 0.9 * smoothed + 0.1 * value
        bar.set_postfix(loss=f"{smoothed:.3f}")
    clip.eval()
    return smoothed


# ---------------------------------------------------------------------------- stage 3: data
def _conversations(config: TinyConfig):
    """The LLaVA stage's (picture, turns) records: the skill mixture, plus LLaVA-style
    alignment records (the full caption, asked for as a description), then the lookup phase's
    shape scenes (`lookup_samples`; last, so the mixture's indices do not depend on them)."""
    from mcit.data.synthetic.pretrain import (
        pretrain_caption_views,
        pretrain_instructions,
        shape_lookups,
    )

    records = pretrain_instructions(
        config.llava_samples,
        config.seed + 2,
        config.image_size,
        config.answer_style,
        config.short_answers,
    )
    captions = pretrain_caption_views(
        config.llava_samples // 4, seed=config.seed + 3, image_size=config.image_size
    )
    records += [(im, [(CAPTION_INSTRUCTION, views[0])]) for im, views in captions]
    if config.lookup_samples:
        records += shape_lookups(config.lookup_samples, config.seed + 8, config.image_size)
    return records


def _llava_model(config: TinyConfig, tokenizer, work: Path) -> LlavaForConditionalGeneration:
    clip = CLIPModel.from_pretrained(work / "clip")
    llava = LlavaForConditionalGeneration(
        llava_config(config, tokenizer, vision_config(config, clip.config))
    )
    if config.vision == "clip":
        llava.model.vision_tower.load_state_dict(clip.vision_model.state_dict(), strict=False)
    else:
        load_imagenet_weights(llava.model.vision_tower, imagenet_weights_path())
    return llava


def _frozen_tower(config: TinyConfig) -> bool:
    return config.vision != "clip"


def device_name(device: torch.device) -> str:
    """`cpu`, or `cuda:0 (NVIDIA H200)` (`cuda` named by its index): what the model card
    records."""
    if device.type == "cuda":
        index = torch.cuda.current_device() if device.index is None else device.index
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(device)


def _build_features(
    config: TinyConfig, tokenizer, work: Path, progress: bool, device: torch.device
) -> None:
    """Write `conversations.json` and, for a frozen tower, `features/<chunk>.safetensors` (the
    tower's output for every picture, float16); for a trained tower, the pixels instead."""
    records = _conversations(config)
    write_json_atomic(work / "conversations.json", [turns for _, turns in records])
    processor = llava_image_processor(config)
    folder = work / "features"
    folder.mkdir(exist_ok=True)
    llava = _llava_model(config, tokenizer, work).eval().to(device)
    backbone = _backbone(llava, tokenizer, processor)
    chunks = range(0, len(records), FEATURE_CHUNK)
    bar = tqdm(chunks, desc="pretrain features", disable=not progress, unit="chunk")
    for start in bar:
        path = folder / f"{start // FEATURE_CHUNK:05d}.safetensors"
        if path.is_file():
            continue  # done before an interruption
        pixels = _images_to_tensor(
            [im for im, _ in records[start : start + FEATURE_CHUNK]], processor
        ).float()
        if _frozen_tower(config):
            with torch.no_grad():
                values = torch.cat(
                    [
                        backbone._tower(pixels[i : i + 256].to(device)).cpu()
                        for i in range(0, len(pixels), 256)
                    ]
                )
        else:
            values = pixels
        with atomic_path(path) as tmp:
            save_file({"values": values.to(torch.float16).contiguous()}, tmp)


def _load_features(work: Path, n: int) -> torch.Tensor:
    files = sorted((work / "features").glob("*.safetensors"))
    values = torch.cat([load_file(f)["values"] for f in files])
    if values.shape[0] != n:
        raise BuildError(f"{work / 'features'}: {values.shape[0]} pictures, expected {n}")
    return values


def _backbone(llava, tokenizer, processor) -> Backbone:
    return Backbone(
        llava, tokenizer, processor, BackboneConfig(name="tiny", chat=ChatFormat(system="")), None
    )


# ---------------------------------------------------------------------------- stage 4: LLaVA
def batch_indices(step: int, lengths: list[int], batch_size: int, seed: int) -> list[int]:
    """The sample indices of `step`'s batch: a pure function of the step. Every group of
    `LENGTH_GROUP` steps draws that many batches' worth of samples, sorts them by length (the
    mixture mixes one- and three-turn samples, and padding to the longest cost 2x, measured),
    cuts them into batches and takes them in a seeded order."""
    group, slot = divmod(step, LENGTH_GROUP)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + group)
    pool = torch.randint(len(lengths), (batch_size * LENGTH_GROUP,), generator=generator).tolist()
    pool.sort(key=lambda i: lengths[i])
    order = torch.randperm(LENGTH_GROUP, generator=generator).tolist()
    k = order[slot]
    return pool[k * batch_size : (k + 1) * batch_size]


def phase_batch(step: int, lengths: list[int], config: TinyConfig) -> list[int]:
    """The record indices of the LLaVA stage's `step`: the lookup phase's records (the last
    `lookup_samples`) for its first `lookup_steps` steps, then the mixture's. Without a lookup
    phase the batches are `batch_indices` of the mixture, as before the phase existed."""
    mixture = len(lengths) - config.lookup_samples
    if step < config.lookup_steps:
        picked = batch_indices(step, lengths[mixture:], config.llava_batch, config.seed + 9)
        return [mixture + i for i in picked]
    step -= config.lookup_steps
    return batch_indices(step, lengths[:mixture], config.llava_batch, config.seed + 7)


def _train_llava(
    config: TinyConfig,
    tokenizer,
    work: Path,
    state: BuildState,
    progress: bool,
    checkpoint_minutes: float,
    max_seconds: float | None,
    device: torch.device,
) -> bool:
    """Train the LLaVA stage from its last checkpoint, on `device`; True when it has finished."""
    turns = read_json(work / "conversations.json", BuildError)
    values = _load_features(work, len(turns))
    _seed_all(config.seed)
    llava = _llava_model(config, tokenizer, work).to(device)
    ran_on = device_name(device)
    backbone = _backbone(llava, tokenizer, llava_image_processor(config))
    collate = Collator(backbone)
    samples = [
        Sample(
            id=f"pretrain-{i}",
            task="pretrain",
            turns=[tuple(t) for t in conv],
            references=[conv[-1][1]],
            metric="exact",
            media={"image": f"mem:{i}"},
        )
        for i, conv in enumerate(turns)
    ]
    lengths = [sum(len(u) + len(a) for u, a in s.turns) for s in samples]
    total_steps = config.lookup_steps + config.llava_steps
    frozen = _frozen_tower(config)
    for p in llava.parameters():
        p.requires_grad_(True)
    if frozen:
        for p in backbone.vision_tower.parameters():
            p.requires_grad_(False)
    params = [p for p in llava.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.llava_lr, weight_decay=0.0)
    scheduler = _cosine(optimizer, total_steps)
    checkpoint = work / "llava-checkpoint"
    step = 0
    if (checkpoint / "trainer.pt").is_file():
        llava.load_state_dict(
            load_file(checkpoint / "model.safetensors", device=str(device)), strict=False
        )
        # On the CPU: AdamW's step counts stay there (its moments follow the parameters).
        saved = torch.load(checkpoint / "trainer.pt", weights_only=True, map_location="cpu")
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        step = int(saved["step"])
    llava.train()
    started = last_save = time.time()
    bar = tqdm(
        total=total_steps,
        initial=step,
        desc="pretrain LLaVA",
        disable=not progress,
        mininterval=2,
    )
    smoothed = math.nan
    while step < total_steps:
        picked = phase_batch(step, lengths, config)
        batch = collate([samples[i] for i in picked], load_pixels=False).to(device)
        feats = values[picked].to(device).float()
        # bf16 autocast: 1.6x faster steps on a CPU with AMX (measured), fp32 weights and AdamW.
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.llava_bf16):
            if frozen:
                embeds = backbone.embed_features(batch.input_ids, feats)
            else:
                embeds = backbone.embed(batch.input_ids, feats)
            logits = backbone.logits(embeds, batch.attention_mask)
        loss = backbone.lm_loss(logits, batch.labels)
        loss.backward()
        optimizer_step(optimizer, scheduler, params, 1.0)
        step += 1
        value = loss.item()
        smoothed = value if math.isnan(smoothed) else 0.9 * smoothed + 0.1 * value
        bar.update(1)
        bar.set_postfix(loss=f"{smoothed:.3f}")
        now = time.time()
        timed_out = max_seconds is not None and now - started >= max_seconds
        if step < total_steps and (now - last_save >= 60 * checkpoint_minutes or timed_out):
            _save_checkpoint(checkpoint, llava, optimizer, scheduler, step, smoothed)
            state.add_seconds("llava", now - started, ran_on)
            started = last_save = now
            if timed_out:
                bar.close()
                return False
    bar.close()
    llava.eval().cpu()
    with atomic_dir(work / "llava") as tmp:
        llava.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        llava_image_processor(config).save_pretrained(tmp)
    state.finish("llava", time.time() - started, final_loss=smoothed, steps=step, device=ran_on)
    shutil.rmtree(checkpoint, ignore_errors=True)
    return True


def _save_checkpoint(folder: Path, llava, optimizer, scheduler, step: int, loss: float) -> None:
    with atomic_dir(folder) as tmp:
        trained = {k: v.detach().cpu().contiguous() for k, v in llava.state_dict().items()}
        save_file(trained, tmp / "model.safetensors")
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "step": step,
                "loss": loss,
            },
            tmp / "trainer.pt",
        )


# ---------------------------------------------------------------------------- the result
def _git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _finish(config: TinyConfig, out: Path, work: Path, state: BuildState, recipe: str | None):
    from mcit.pretrain.card import model_card_markdown

    probe = read_json(work / "probe.json", BuildError)
    card = {
        "name": f"mcit tiny base ({recipe or 'custom recipe'})",
        "recipe": recipe,
        "recipe_version": RECIPE_VERSION,
        "config": asdict(config),
        "seeds": {
            "recipe": config.seed,
            "clip_data": config.seed + 1,
            "instructions": config.seed + 2,
            "alignment_captions": config.seed + 3,
            "audio_sounds": config.seed + 4,
            "audio_batches": config.seed + 5,
            "batches": config.seed + 7,
            **(
                {"lookups": config.seed + 8, "lookup_batches": config.seed + 9}
                if config.lookup_steps
                else {}
            ),
            "probe": config.seed + 10_000,
        },
        "code_hash": recipe_code_hash(),
        # The generated mixture itself (every conversation's text, in order).
        "data_hash": state.data["done"]["features"].get("conversations_sha256"),
        "mcit_commit": _git_commit(),
        "built_on": {
            "machine": platform.machine(),
            "processor": platform.processor() or None,
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            # Where the stages that can use an accelerator ran (the others ran on the CPU).
            "devices": {stage: state.devices(stage) for stage in ("features", "llava")},
        },
        "seconds": state.data["seconds"],
        "final_losses": {
            "clip": state.data["done"]["clip"]["final_loss"],
            "llava": state.data["done"]["llava"]["final_loss"],
            "audio": state.data["done"]["audio"]["final_loss"],
        },
        "probe": probe,
        "audio_probe": state.data["done"]["audio"]["probe"],
    }
    for name in ("llava", "clip", "audio"):
        target = out / name
        if target.exists():
            shutil.rmtree(target)
        os.replace(work / name, target)
    write_json_atomic(out / "model_card.json", card)
    write_text_atomic(out / "MODEL_CARD.md", model_card_markdown(card))
    _readable(out)
    write_text_atomic(out / "DONE", RECIPE_VERSION + "\n")
    shutil.rmtree(work, ignore_errors=True)


def _readable(out: Path) -> None:
    for name in ("llava", "clip", "audio"):
        for file in (out / name).iterdir():
            file.chmod(0o644)  # ordinary data, readable by whoever loads (or ships) the base


def add_audio_stage(config: TinyConfig, out: Path, progress: bool = True) -> None:
    """Give a base finished before the `audio` stage existed its audio encoder: the stage
    runs on the base's own CLIP, and the model card gains the stage's record. Nothing else of
    the base changes."""
    from mcit.pretrain.audio import build_audio_encoder
    from mcit.pretrain.card import model_card_markdown

    _say(progress)(f"[mcit] adding the audio encoder to the tiny base in {out}")
    record = build_audio_encoder(config, out / "clip", out / "audio", progress)
    card = read_json(out / "model_card.json", BuildError)
    card["seconds"]["audio"] = record["seconds"]
    card["final_losses"]["audio"] = record["final_loss"]
    card["audio_probe"] = record["probe"]
    card["audio_stage"] = {  # built later than the rest, from this code
        "config": {k: v for k, v in asdict(config).items() if k.startswith("audio_")},
        "code_hash": recipe_code_hash(),
        "mcit_commit": _git_commit(),
    }
    card["seeds"].setdefault("audio_sounds", config.seed + 4)
    card["seeds"].setdefault("audio_batches", config.seed + 5)
    write_json_atomic(out / "model_card.json", card)
    write_text_atomic(out / "MODEL_CARD.md", model_card_markdown(card))
    _readable(out)
