"""Stage `audio` of the tiny base: its audio encoder, a Whisper encoder trained from scratch.

The encoder learns CLAP-style: a synthesised sound and one of its descriptions are pulled
together, against the other sounds and descriptions of the batch. The description side is the
tiny CLIP's text tower, frozen, with a trainable linear head; the sound side is the encoder's
output averaged over the frames the clip covers, through a linear head. Sounds of the same class
share descriptions, so the contrastive targets are spread over every row of the batch with the
same class (supervised contrastive), not only over the diagonal.

The sounds are those micl-mini's audio tasks use (tones, chirps, noise, beats:
`mcit.data.micl_mini.sounds`, drawn with another seed), but the descriptions are worded unlike
the tasks' captions and questions, so the base learns to hear, not the tasks' formats.

The stage writes `<out>/audio/`: the `WhisperEncoder` and its `WhisperFeatureExtractor`
(loadable by `mcit.models.audio.load_audio_encoder`, as any local Whisper directory), and
`heads.safetensors` (the two heads: the sound's place in CLIP's text space). Its probe (held-out
sounds, each matched to the nearest of the classes' descriptions) goes into the model card.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoTokenizer, CLIPModel
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from mcit.data.micl_mini.sounds import KINDS, NUMBERS, synthesize
from mcit.data.synthetic.common import schedule
from mcit.files import atomic_dir
from mcit.models.audio import AudioEncoder, tiny_feature_extractor, tiny_whisper_config
from mcit.models.tiny import TinyConfig
from mcit.train.trainer import optimizer_step

# Descriptions of each (kind, value): worded unlike micl-mini's captions and questions.
_DIGITS = {word: str(k) for k, word in NUMBERS.items()}
DESCRIPTIONS: dict[tuple[str, str], list[str]] = {
    ("tone", "high"): [
        "a steady sound at a high pitch",
        "pitch: high, it does not change",
        "sound kind tone, pitch high",
    ],
    ("tone", "low"): [
        "a steady sound at a low pitch",
        "pitch: low, it does not change",
        "sound kind tone, pitch low",
    ],
    ("chirp", "rising"): [
        "a glide from a low pitch to a high pitch",
        "the frequency sweeps upward",
        "sound kind chirp, pitch going up",
    ],
    ("chirp", "falling"): [
        "a glide from a high pitch to a low pitch",
        "the frequency sweeps downward",
        "sound kind chirp, pitch going down",
    ],
    ("noise", "loud"): [
        "random hiss at a high volume",
        "volume: loud, no pitch at all",
        "sound kind noise, volume loud",
    ],
    ("noise", "quiet"): [
        "random hiss at a low volume",
        "volume: quiet, no pitch at all",
        "sound kind noise, volume quiet",
    ],
    **{
        ("beats", word): [
            f"a row of {_DIGITS[word]} short knocks",
            f"number of clicks: {word}",
            f"sound kind beats, {_DIGITS[word]} of them",
        ]
        for word in NUMBERS.values()
    },
}
CLASSES = list(DESCRIPTIONS)
PROBE_SEED = 10_000  # added to the recipe's seed: sounds never trained on


def pretrain_sounds(n: int, seed: int) -> list[tuple[np.ndarray, int]]:
    """`n` (samples, class index) pairs, every class equally often."""
    rng = random.Random(seed)
    return [
        (synthesize(kind, value, rng).samples, CLASSES.index((kind, value)))
        for kind, value in schedule(rng, CLASSES, n)
    ]


def build_audio_encoder(
    config: TinyConfig, clip_dir: Path, target: Path, progress: bool
) -> dict[str, object]:
    """Train the audio encoder, write it to `target` (see the module doc) and return the
    stage's record for the model card: final loss, probe, seconds."""
    started = time.time()
    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(clip_dir)
    clip = CLIPModel.from_pretrained(clip_dir).eval()
    encoder = AudioEncoder(
        WhisperEncoder(
            tiny_whisper_config(
                config.audio_mels,
                config.audio_hidden,
                config.audio_layers,
                config.audio_heads,
                config.audio_seconds,
            )
        ),
        tiny_feature_extractor(config.audio_mels, config.audio_seconds),
        tokens=1,  # the contrastive side reads one averaged vector per clip
    )
    from mcit.pretrain.build import _cosine, _encode_texts, _pad_right

    texts = [text for cls in CLASSES for text in DESCRIPTIONS[cls]]
    with torch.no_grad():  # right padded, ending in EOS: where CLIP's text tower pools
        ids, mask = _pad_right(_encode_texts(tokenizer, texts, 77), tokenizer.pad_token_id)
        text_features = clip.get_text_features(input_ids=ids, attention_mask=mask)
        if not isinstance(text_features, torch.Tensor):  # transformers 5 returns an output
            text_features = text_features.pooler_output
    views = len(DESCRIPTIONS[CLASSES[0]])
    text_features = text_features.reshape(len(CLASSES), views, -1)
    dim = text_features.shape[-1]
    audio_head = nn.Linear(encoder.width, dim)
    text_head = nn.Linear(dim, dim)
    logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    sounds = pretrain_sounds(config.audio_samples, seed=config.seed + 4)
    mels, frames = _spectrograms(encoder, [s for s, _ in sounds])
    labels = torch.tensor([c for _, c in sounds])
    params = [*encoder.parameters(), *audio_head.parameters(), *text_head.parameters()]
    params.append(logit_scale)
    optimizer = torch.optim.AdamW(params, lr=config.audio_lr, weight_decay=0.05)
    scheduler = _cosine(optimizer, config.audio_steps)
    generator = torch.Generator().manual_seed(config.seed + 5)
    encoder.train()
    smoothed = math.nan
    bar = tqdm(
        range(config.audio_steps), desc="pretrain audio", disable=not progress, mininterval=2
    )
    for _ in bar:
        idx = torch.randint(len(sounds), (config.audio_batch,), generator=generator)
        pick = torch.randint(views, (config.audio_batch,), generator=generator)
        cls = labels[idx]
        a = nn.functional.normalize(audio_head(encoder(mels[idx], frames[idx])[:, 0]), dim=-1)
        t = nn.functional.normalize(text_head(text_features[cls, pick]), dim=-1)
        logits = logit_scale.exp().clamp(max=100) * a @ t.T
        same = (cls[:, None] == cls[None, :]).float()
        targets = same / same.sum(-1, keepdim=True)
        loss = 0.5 * (
            nn.functional.cross_entropy(logits, targets)
            + nn.functional.cross_entropy(logits.T, targets)
        )
        loss.backward()
        optimizer_step(optimizer, scheduler, params, 1.0)
        value = loss.item()
        smoothed = value if math.isnan(smoothed) else 0.9 * smoothed + 0.1 * value
        bar.set_postfix(loss=f"{smoothed:.3f}")
    encoder.eval()
    probe = probe_audio(encoder, audio_head, text_head, text_features, config)
    with atomic_dir(target) as tmp:
        encoder.encoder.save_pretrained(tmp)
        encoder.extractor.save_pretrained(tmp)
        heads = {f"audio_head.{k}": v for k, v in audio_head.state_dict().items()}
        heads |= {f"text_head.{k}": v for k, v in text_head.state_dict().items()}
        save_file({k: v.contiguous() for k, v in heads.items()}, Path(tmp) / "heads.safetensors")
    return {
        "final_loss": round(smoothed, 4),
        "probe": probe,
        "seconds": round(time.time() - started, 1),
    }


def _spectrograms(encoder: AudioEncoder, clips: list[np.ndarray]):
    mels, frames = [], []
    for start in range(0, len(clips), 256):
        m, f = encoder.log_mel(clips[start : start + 256])
        mels.append(m)
        frames.append(f)
    return torch.cat(mels), torch.cat(frames)


@torch.no_grad()
def probe_audio(
    encoder: AudioEncoder,
    audio_head: nn.Module,
    text_head: nn.Module,
    text_features: torch.Tensor,
    config: TinyConfig,
) -> dict[str, float]:
    """Held-out sounds matched to the nearest class (the mean of its descriptions' heads):
    accuracy per kind of sound, % (the value within the kind must be right too)."""
    per_kind = max(8, config.report_samples // 2)
    sounds = pretrain_sounds(per_kind * len(CLASSES), seed=config.seed + PROBE_SEED)
    mels, frames = _spectrograms(encoder, [s for s, _ in sounds])
    a = nn.functional.normalize(audio_head(encoder(mels, frames)[:, 0]), dim=-1)
    classes = nn.functional.normalize(
        nn.functional.normalize(text_head(text_features), dim=-1).mean(1), dim=-1
    )
    guess = (a @ classes.T).argmax(-1).tolist()
    scores: dict[str, float] = {}
    for kind in KINDS:
        rows = [i for i, (_, c) in enumerate(sounds) if CLASSES[c][0] == kind]
        right = sum(guess[i] == sounds[i][1] for i in rows)
        scores[kind] = round(100 * right / len(rows), 1)
    scores["mean"] = round(sum(scores.values()) / len(KINDS), 1)
    return scores
