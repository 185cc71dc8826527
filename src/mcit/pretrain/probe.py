"""The held-out probe of a tiny base: does it have each skill coin-mini needs?

Fresh pictures from a seed no training used, skill by skill (`report_samples` questions each),
asked in the pre-training mixture's own phrasings and scored by exact match of the full-sentence
answer; "where" is scored as the share of boxes with IoU > 0.5 (its exact match is kept beside
it), and descriptions by CIDEr against the generator's caption. The pictures are written as PNG
files and read back through the backbone, as a benchmark's are.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from tqdm.auto import tqdm

from mcit.config import BackboneConfig, ChatFormat
from mcit.data.collate import Collator
from mcit.data.sample import Sample
from mcit.models.backbone import load_llava_dir
from mcit.models.tiny import CAPTION_INSTRUCTION, TinyConfig

BOX_SKILL = "where"
CAPTION_SKILL = "describe"


def picture_files(images: list, folder: str | Path) -> list[str]:
    """Save `images` as `<folder>/<i>.png` and return their paths: the probes read pictures
    from files, as a benchmark's are read."""
    paths = []
    for i, image in enumerate(images):
        path = Path(folder) / f"{i}.png"
        image.save(path)
        paths.append(str(path))
    return paths


def single_turn_samples(rows: list[tuple[str, str, str]], prefix: str) -> list[Sample]:
    """(image path, user, answer) rows as single-turn samples."""
    return [
        Sample(
            id=f"{prefix}-{i}",
            task=prefix,
            turns=[(user, answer)],
            references=[answer],
            metric="exact",
            media={"image": path},
        )
        for i, (path, user, answer) in enumerate(rows)
    ]


@torch.no_grad()
def generate_answers(
    backbone, collate: Collator, samples: list[Sample], desc: str, progress: bool = False
) -> list[str]:
    """Greedy answers (at most 48 new tokens) to single-turn samples, 50 at a time."""
    out = []
    for start in tqdm(range(0, len(samples), 50), desc=desc, disable=not progress, mininterval=2):
        batch = collate(samples[start : start + 50], with_answer=False)
        out += backbone.generate(
            backbone.embed_batch(batch), batch.attention_mask, max_new_tokens=48
        )
    return out


@torch.no_grad()
def probe_base(llava_dir: Path, clip_dir: Path, config: TinyConfig, progress: bool = True) -> dict:
    """Per-skill scores of the base in `llava_dir` on held-out pictures (see the module doc)."""
    from mcit.data.synthetic.pretrain import (
        TERSE_REQUESTS,
        decision,
        pretrain_captions,
        short_answer,
        skill_probe,
    )
    from mcit.evaluation.scorers import score_predictions

    backbone = load_llava_dir(
        llava_dir, BackboneConfig(name="tiny"), clip_dir=str(clip_dir), chat=ChatFormat(system="")
    )
    collate = Collator(backbone)
    n = config.report_samples
    held_seed = config.seed + 10_000
    probe = [
        row
        for row in skill_probe(n, held_seed, config.image_size, config.answer_style)
        if row[0] != CAPTION_SKILL
    ]
    captions = pretrain_captions(4 * n, seed=held_seed + 1, image_size=config.image_size)
    with tempfile.TemporaryDirectory(prefix="mcit-probe-") as tmp:
        paths = picture_files([im for _, im, _, _ in probe] + [im for im, _ in captions], tmp)
        qa = single_turn_samples(
            [(paths[i], user, answer) for i, (_, _, user, answer) in enumerate(probe)],
            "probe",
        )
        cap = single_turn_samples(
            [
                (paths[len(probe) + i], CAPTION_INSTRUCTION, text)
                for i, (_, text) in enumerate(captions)
            ],
            "probe-caption",
        )

        answers = generate_answers(backbone, collate, qa, "probe skills", progress)
        captions_pred = generate_answers(backbone, collate, cap, "probe captions", progress)
        # A base taught short answers is asked each question for one too (the first request).
        short = [
            (i, skill, ref)
            for i, (skill, _, _, answer) in enumerate(probe)
            if config.short_answers and (ref := short_answer(skill, answer)) is not None
        ]
        short_qa = single_turn_samples(
            [(paths[i], f"{probe[i][2]}\n{TERSE_REQUESTS[0]}", ref) for i, _, ref in short],
            "probe-short",
        )
        short_pred = generate_answers(backbone, collate, short_qa, "probe short", progress)
    exact = score_predictions("exact", answers, [s.references for s in qa])
    style = config.answer_style
    decided = score_predictions(
        "exact",
        [decision(skill, p, style) for (skill, *_), p in zip(probe, answers, strict=True)],
        [[decision(skill, answer, style)] for skill, _, _, answer in probe],
    )
    by_skill: dict[str, list[float]] = {}
    decided_by_skill: dict[str, list[float]] = {}
    for (skill, *_), score, right in zip(probe, exact, decided, strict=True):
        by_skill.setdefault(skill, []).append(score)
        decided_by_skill.setdefault(skill, []).append(right)
    where = [
        (p, s.references)
        for (k, *_), p, s in zip(probe, answers, qa, strict=True)
        if k == BOX_SKILL
    ]
    iou = score_predictions("iou", [p for p, _ in where], [r for _, r in where]) if where else []
    exact_share = {k: round(100 * sum(v) / len(v), 1) for k, v in sorted(by_skill.items())}
    skills = {k: round(100 * sum(v) / len(v), 1) for k, v in sorted(decided_by_skill.items())}
    if iou:
        skills[BOX_SKILL] = round(100 * sum(iou) / len(iou), 1)
    cider = score_predictions("cider", captions_pred, [s.references for s in cap])
    short_by_skill: dict[str, list[float]] = {}
    for (_, skill, ref), p in zip(short, short_pred, strict=True):
        scorer = "iou" if skill == BOX_SKILL else "exact"
        short_by_skill.setdefault(skill, []).append(score_predictions(scorer, [p], [[ref]])[0])
    return {
        # The score of each skill: exact match (of the decision, for a referent-value
        # comparison), except boxes (IoU > 0.5).
        "skills": skills,
        "skills_mean": round(sum(skills.values()) / len(skills), 2),
        "skills_min": min(skills.values()),
        "exact_match": exact_share,  # of the whole answer
        "answer_style": style,
        "where_iou50": skills.get(BOX_SKILL),
        "captions_cider": round(100 * sum(cider) / len(cider), 2),
        "questions_per_skill": n,
        # Asked for a short answer ("Answer: <value>."), when the recipe teaches them: exact
        # match, boxes IoU > 0.5.
        "short_answers": {
            k: round(100 * sum(v) / len(v), 1) for k, v in sorted(short_by_skill.items())
        },
        "examples": [
            {"skill": skill, "question": user, "prediction": p, "reference": answer}
            for (skill, _, user, answer), p in list(zip(probe, answers, strict=True))[::n][:24]
        ]
        + [
            {"skill": "caption", "prediction": p, "reference": s.references[0]}
            for s, p in list(zip(cap, captions_pred, strict=True))[:3]
        ],
    }
