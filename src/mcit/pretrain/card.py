"""The model card of a built base, in Markdown (its JSON twin is `model_card.json`)."""

from __future__ import annotations

import json


def model_card_markdown(card: dict) -> str:
    probe = card["probe"]
    lines = [
        f"# {card['name']}",
        "",
        "A tiny LLaVA (`LlavaForConditionalGeneration`, llava-hf layout) and its tiny CLIP,",
        "pre-trained by mcit's own recipe on procedurally generated pictures. No benchmark test",
        "picture was seen in training; the probe below uses pictures from a held-out seed.",
        "",
        "| field | value |",
        "| --- | --- |",
        f"| recipe | `{card['recipe']}` (version `{card['recipe_version']}`) |",
        f"| code hash | `{card['code_hash']}` |",
        f"| data hash (conversations) | `{card.get('data_hash')}` |",
        f"| mcit commit | `{card['mcit_commit']}` |",
        f"| built on | {card['built_on']['cpu_count']} CPUs, {card['built_on']['torch_threads']} "
        f"torch threads, torch {card['built_on']['torch']}"
        + "".join(  # a card from before the device option ran everything on the CPU
            f"; {stage} on {where}" for stage, where in card["built_on"].get("devices", {}).items()
        )
        + " |",
        f"| wall time (s) | {json.dumps(card['seconds'])} |",
        f"| final losses | CLIP {card['final_losses']['clip']:.3f}, "
        f"LLaVA {card['final_losses']['llava']:.3f}"
        + (f", audio {losses['audio']:.3f}" if "audio" in (losses := card["final_losses"]) else "")
        + " |",
        f"| seeds | {json.dumps(card['seeds'])} |",
        "",
        f"## Probe ({probe['questions_per_skill']} held-out questions per skill)",
        "",
        *_scoring_lines(probe),
        "",
        "| skill | score | whole answer exact |",
        "| --- | --: | --: |",
        *[
            f"| {skill} | {score:.1f} | {probe['exact_match'].get(skill, float('nan')):.1f} |"
            for skill, score in probe["skills"].items()
        ],
        f"| **mean** | **{probe['skills_mean']:.1f}** | |",
        "",
        *_short_lines(probe),
        f'Captions ("Describe the picture."): CIDEr {probe["captions_cider"]:.1f}.',
        "",
        *_audio_lines(card),
        "## Config",
        "",
        "```json",
        json.dumps(card["config"], indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)


def _short_lines(probe: dict) -> list[str]:
    """The same questions asked for a short answer, for a recipe that teaches them."""
    short = probe.get("short_answers") or {}
    if not short:
        return []
    mean = sum(short.values()) / len(short)
    return [
        'Asked for a short answer ("...\\nKeep the reply short.", answered "Answer: <value>."; '
        "exact match, boxes IoU > 0.5):",
        "",
        "| skill | short answer |",
        "| --- | --: |",
        *[f"| {skill} | {score:.1f} |" for skill, score in short.items()],
        f"| **mean** | **{mean:.1f}** |",
        "",
    ]


def _scoring_lines(probe: dict) -> list[str]:
    if probe.get("answer_style", "sentence") == "sentence":
        return ["Exact match of the full-sentence answer; `where` is boxes with IoU > 0.5."]
    return [
        f"Answers in the `{probe['answer_style']}` style. Exact match of the answer; for the",
        "comparisons (left of, higher, bigger, furthest, highest), of the decision after the",
        "stated values; `where` is boxes with IoU > 0.5.",
    ]


def _audio_lines(card: dict) -> list[str]:
    probe = card.get("audio_probe")
    if not probe:
        return []
    lines = [
        "## Audio encoder probe",
        "",
        "A Whisper encoder (`audio/`), trained contrastively against the CLIP text tower on",
        "synthesised sounds. Held-out sounds, each matched to the nearest class description",
        "(its value must be right too: high or low, rising or falling, loud or quiet, how many).",
        "",
        "| kind of sound | accuracy |",
        "| --- | --: |",
        *[f"| {kind} | {score:.1f} |" for kind, score in probe.items() if kind != "mean"],
        f"| **mean** | **{probe['mean']:.1f}** |",
        "",
    ]
    stage = card.get("audio_stage")
    if stage:
        lines += [
            f"Built after the rest of the base (code hash `{stage['code_hash']}`, mcit commit "
            f"`{stage['mcit_commit']}`), with:",
            "",
            "```json",
            json.dumps(stage["config"], indent=2),
            "```",
            "",
        ]
    return lines
