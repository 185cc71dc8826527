"""Short LLaVA stages on shape scenes, side by side: which answer wording teaches the tiny LM to
look a shape's colour up in the picture (docs/base.md, "A lookup phase first").

A fresh projector + LM (the shipped base's architecture, or `--layers` / `--hidden`) is trained
from scratch on the frozen tower's features of `--pictures` shape scenes of the mixture, with a
fresh question drawn each time a picture is drawn, and scored every `--every` steps on 400
held-out scenes: teacher-forced exact match of the whole answer in the sentence style ("The star
is purple."), or in the referent-value style for `--style referent-value` ("The star purple.").

    --style sentence | referent-value | mixed (each answer either) |
            curriculum (referent-value for the first half of the steps, then sentences)
    --skill color_of | hard (every shape-scene skill but counting all shapes, one per picture)
    --transfer N   then N steps (lr 3e-4) of a task-like format, "What color is the <shape>?
                   Answer the question using a single word or phrase." -> "purple", scored alike

    .venv/bin/python scripts/lookup-stage.py --style curriculum --transfer 200 [--threads 1]

Prints one JSON line per evaluation. Features are cached in `--cache` (about 120 MB).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer, LlavaForConditionalGeneration

import mcit  # noqa: F401  (registers the EfficientNet-Lite tower with transformers)
from mcit.data.collate import Collator
from mcit.data.sample import Sample
from mcit.data.synthetic import pretrain
from mcit.data.synthetic.scene import background_color, render_objects
from mcit.models.tiny import TinyConfig, llava_config, llava_image_processor
from mcit.pretrain.build import _backbone as pretrain_backbone  # the LLaVA stage's own
from mcit.pretrain.shipped import shipped_dir
from mcit.train.trainer import optimizer_step

ONE_WORD = "What color is the {shape}?\nAnswer the question using a single word or phrase."


def scenes(n: int, seed: int) -> list[tuple]:
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        objs = pretrain._shapes(rng)
        if objs is not None:
            out.append((render_objects(64, objs, background_color(rng)).image(), objs))
    return out


def features(shipped, tokenizer, processor, cache: Path, pictures: int) -> dict:
    """The frozen tower's tokens of the training and held-out scenes (cached on disk)."""
    if cache.is_file():
        return torch.load(cache, weights_only=False)
    backbone = pretrain_backbone(shipped, tokenizer, processor)
    data = {}
    for split, n, seed in (("train", pictures, 1), ("test", 400, 99)):
        made = scenes(n, seed)
        pixels = torch.stack(
            [
                torch.as_tensor(processor(im, return_tensors="pt")["pixel_values"][0])
                for im, _ in made
            ]
        ).float()
        with torch.no_grad():
            values = torch.cat([backbone._tower(pixels[i : i + 256]) for i in range(0, n, 256)])
        data[split] = (values.half(), [objs for _, objs in made])
    torch.save(data, cache)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--style", default="sentence")
    parser.add_argument("--skill", default="color_of")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256, help="LM width (MLP 3x, 64-d heads)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    parser.add_argument("--transfer", type=int, default=0)
    parser.add_argument("--pictures", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/mcit-lookup-features.pt"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    base = shipped_dir("tiny-lite0") / "llava"
    shipped = LlavaForConditionalGeneration.from_pretrained(base)
    tokenizer = AutoTokenizer.from_pretrained(base)
    config = TinyConfig(
        lm_layers=args.layers,
        lm_hidden=args.hidden,
        lm_heads=args.hidden // 64,
        lm_intermediate=3 * args.hidden,
    )
    processor = llava_image_processor(config)
    data = features(shipped, tokenizer, processor, args.cache, args.pictures)
    train_feats, train_objs = data["train"]
    test_feats, test_objs = data["test"]

    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(
        llava_config(config, tokenizer, shipped.config.vision_config)
    )
    model.model.vision_tower.load_state_dict(shipped.model.vision_tower.state_dict())
    model.model.vision_tower.requires_grad_(False)
    backbone = pretrain_backbone(model, tokenizer, processor)
    collate = Collator(backbone)
    params = [p for p in model.parameters() if p.requires_grad]
    state = {"step": 0, "phase": "main"}
    autocast = dict(device_type="cpu", dtype=torch.bfloat16, enabled=not args.fp32)
    scored_style = "referent-value" if args.style == "referent-value" else "sentence"

    def turn(objs, rng: random.Random, training: bool):
        if state["phase"] == "transfer":
            unique = [o for o in objs if sum(x.shape == o.shape for x in objs) == 1]
            if not unique:
                return None
            o = rng.choice(unique)
            return ("transfer", ONE_WORD.format(shape=o.shape), o.color)
        style = scored_style
        if training and args.style == "mixed":
            style = rng.choice(["sentence", "referent-value"])
        if training and args.style == "curriculum":
            style = "referent-value" if state["step"] < args.steps // 2 else "sentence"
        turns = [
            t
            for t in pretrain._shape_turns(objs, rng, style)
            if t[0] == args.skill or (args.skill == "hard" and t[0] != "count_all")
        ]
        if not turns:
            return None
        return rng.choice(turns) if args.skill == "hard" else turns[0]

    def batch(indices, objs, feats, rng, training=True):
        samples, kept = [], []
        for i in indices:
            t = turn(objs[i], rng, training)
            if t is not None:
                samples.append(
                    Sample(
                        id=f"{i}|{t[0]}",
                        task="lookup",
                        turns=[(t[1], t[2])],
                        references=[t[2]],
                        metric="exact",
                        media={"image": f"mem:{i}"},
                    )
                )
                kept.append(i)
        return collate(samples, load_pixels=False), feats[kept].float(), samples

    def evaluate() -> tuple[float, dict[str, float]]:
        model.eval()
        rng, right, total, per_skill = random.Random(7), 0, 0, {}
        with torch.no_grad():
            for start in range(0, len(test_objs), 100):
                indices = range(start, min(start + 100, len(test_objs)))
                b, f, samples = batch(indices, test_objs, test_feats, rng, training=False)
                with torch.autocast(**autocast):
                    logits = backbone.logits(
                        backbone.embed_features(b.input_ids, f), b.attention_mask
                    )
                predicted, labels = logits[:, :-1].argmax(-1), b.labels[:, 1:]
                exact = ((predicted == labels) | (labels == -100)).all(-1).tolist()
                for sample, ok in zip(samples, exact, strict=True):
                    counts = per_skill.setdefault(sample.id.split("|")[1], [0, 0])
                    counts[0] += ok
                    counts[1] += 1
                right, total = right + sum(exact), total + len(exact)
        model.train()
        return 100 * right / total, {k: round(100 * a / n, 1) for k, (a, n) in per_skill.items()}

    draws = random.Random(5)  # the training pictures and questions, both phases

    def train(steps: int, optimizer, scheduler, label: str) -> None:
        rng, started, smoothed = draws, time.time(), None
        every = 50 if label == "transfer" else args.every
        for step in range(steps):
            state["step"] = step
            indices = [rng.randrange(len(train_objs)) for _ in range(32)]
            b, f, _ = batch(indices, train_objs, train_feats, rng)
            with torch.autocast(**autocast):
                logits = backbone.logits(backbone.embed_features(b.input_ids, f), b.attention_mask)
            loss = backbone.lm_loss(logits, b.labels)
            loss.backward()
            optimizer_step(optimizer, scheduler, params, 1.0)
            smoothed = loss.item() if smoothed is None else 0.95 * smoothed + 0.05 * loss.item()
            if (step + 1) % every == 0:
                accuracy, per_skill = evaluate()
                line = {"phase": label, "step": step + 1, "loss": round(smoothed, 4)}
                line.update(accuracy=round(accuracy, 1), seconds=round(time.time() - started))
                if args.skill == "hard":
                    line["skills"] = per_skill
                print(json.dumps(line), flush=True)

    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    warmup = 0.05 * args.steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * s / args.steps)),
    )
    train(args.steps, optimizer, scheduler, args.style)
    if args.transfer:
        state["phase"] = "transfer"
        print(json.dumps({"phase": "transfer", "step": 0, "accuracy": evaluate()[0]}), flush=True)
        optimizer = torch.optim.AdamW(params, lr=3e-4, weight_decay=0.0)
        constant = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
        train(args.transfer, optimizer, constant, "transfer")


if __name__ == "__main__":
    main()
