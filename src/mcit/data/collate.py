"""Samples → tensors: chat layout, media slots, label masking, left padding.

Each segment is tokenised on its own and the ids are concatenated, so the boundary between
prompt and answer is exact and the labels mask every prompt token (-100) and keep every answer
token and the EOS that ends it. Batches are left padded for training and generation alike;
the backbone derives position ids from the attention mask, so the padding side does not change
the result.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from mcit.data.media import read_audio, read_video
from mcit.data.sample import Sample
from mcit.errors import BackboneError, ConfigError
from mcit.models.audio import SAMPLE_RATE
from mcit.models.backbone import IGNORE_INDEX

IGNORE = IGNORE_INDEX


@dataclass
class Batch:
    """A collated batch. `samples` travel with it so methods can read instructions and media."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor | None
    pixel_values: torch.Tensor | None
    samples: list[Sample] = field(default_factory=list)
    # Audio: log-mel spectrograms [A, mels, frames] and each clip's length in frames [A];
    # video: processed frames [V, frames, 3, H, W]. Rows in the order of the samples that
    # carry them, as `pixel_values` for images.
    audio: tuple[torch.Tensor, torch.Tensor] | None = None
    video: torch.Tensor | None = None

    def to(self, device: torch.device | str, **_: object) -> Batch:
        return Batch(
            input_ids=self.input_ids.to(device),
            attention_mask=self.attention_mask.to(device),
            labels=None if self.labels is None else self.labels.to(device),
            pixel_values=None if self.pixel_values is None else self.pixel_values.to(device),
            samples=self.samples,
            audio=None if self.audio is None else tuple(t.to(device) for t in self.audio),
            video=None if self.video is None else self.video.to(device),
        )

    def __len__(self) -> int:
        return self.input_ids.shape[0]


class Collator:
    """Builds training batches (prompt + answer) or generation batches (prompt only)."""

    def __init__(self, backbone, max_length: int | None = None):
        self.backbone = backbone
        self.tokenizer = backbone.tokenizer
        self.chat = backbone.chat
        # Never past the LM's positions (the tiny LM has 512). Prompt methods add their prompts
        # after collation and generation adds its new tokens: those must fit in what is left.
        positions = getattr(backbone.model.config.text_config, "max_position_embeddings", None)
        self.max_length = min(max_length or backbone.config.max_length, positions or 1 << 30)
        self._cache: dict[str, list[int]] = {}
        self._warned = False

    def _ids(self, text: str) -> list[int]:
        ids = self._cache.get(text)
        if ids is None:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(self._cache) < 200_000:
                self._cache[text] = ids
        return ids

    def encode(self, sample: Sample, with_answer: bool) -> tuple[list[int], list[int]]:
        """Token ids and labels of one sample; without the answer, the prompt for generation.
        Past `max_length`, the oldest text after the image is cut (warned once)."""
        ids, labels, media_end = self._untruncated(sample, with_answer)
        if len(ids) > self.max_length:
            room = self.max_length - media_end
            if room <= 0:
                raise ConfigError(
                    f"sample {sample.id} ({sample.task}): its header and "
                    f"media slots take {media_end} tokens, "
                    f"more than model.backbone.max_length {self.max_length}"
                )
            if not self._warned:
                warnings.warn(
                    f"sample {sample.id} ({sample.task}) has {len(ids)} tokens, more than "
                    f"max_length {self.max_length}: the oldest text after its image is cut "
                    "(warned once per run)",
                    stacklevel=2,
                )
                self._warned = True
            # Keep BOS, the header and the image slots; cut the oldest text after them.
            ids = ids[:media_end] + ids[len(ids) - room :]
            labels = labels[:media_end] + labels[len(labels) - room :]
        return ids, labels

    def length(self, sample: Sample) -> int:
        """Tokens of the whole training sequence of `sample` (image slots included), before any
        cut: what `mcit data validate --config` compares with `max_length`."""
        return len(self._untruncated(sample, with_answer=True)[0])

    def _untruncated(self, sample: Sample, with_answer: bool) -> tuple[list[int], list[int], int]:
        """Ids, labels and the end of the image slots, whatever the length."""
        chat = self.chat
        bos = [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []
        ids: list[int] = list(bos)
        labels: list[int] = [IGNORE] * len(ids)
        media_end = 0  # just after the image slots: what truncation must keep
        turns = sample.turns if with_answer else sample.turns[:-1] + [(sample.turns[-1][0], "")]
        for i, (user, answer) in enumerate(turns):
            head = (chat.system + " " if chat.system and i == 0 else "") + chat.user
            prompt = self._ids(head)
            if i == 0 and sample.media:
                unread = sorted(set(sample.media) - set(self.backbone.media_tokens))
                if unread:  # never slots for media the model cannot see
                    raise BackboneError(
                        f"sample {sample.id!r} ({sample.task}) carries {', '.join(unread)}: "
                        f"this backbone was loaded for {', '.join(self.backbone.media_tokens)} "
                        "only (the runner loads what the benchmark's tasks carry)"
                    )
                for modality in sample.media:
                    cue = {"audio": chat.audio_cue, "video": chat.video_cue}.get(modality, "")
                    slot = self.backbone.media_token_ids[modality]
                    count = self.backbone.media_tokens[modality]
                    prompt = prompt + (self._ids(cue) if cue else []) + [slot] * count
                media_end = len(ids) + len(prompt)
                user = "\n" + user
            prompt = prompt + self._ids(user + chat.assistant)
            ids += prompt
            labels += [IGNORE] * len(prompt)
            last = i == len(turns) - 1
            if with_answer or not last:
                target = self._ids(chat.answer_prefix + answer + chat.turn_end) + [
                    self.tokenizer.eos_token_id
                ]
                ids += target
                labels += target
        return ids, labels, media_end

    def __call__(
        self, samples: list[Sample], with_answer: bool = True, load_pixels: bool = True
    ) -> Batch:
        """The batch of `samples`; `load_pixels=False` leaves `pixel_values` empty for a caller
        that brings the vision features itself (the base's pre-training)."""
        encoded = [self.encode(s, with_answer) for s in samples]
        width = max(len(ids) for ids, _ in encoded)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(samples), width), pad, dtype=torch.long)
        attention = torch.zeros((len(samples), width), dtype=torch.long)
        labels = torch.full((len(samples), width), IGNORE, dtype=torch.long)
        for row, (ids, labs) in enumerate(encoded):
            n = len(ids)
            input_ids[row, width - n :] = torch.tensor(ids)
            attention[row, width - n :] = 1
            labels[row, width - n :] = torch.tensor(labs)
        image_paths = [s.media["image"] for s in samples if "image" in s.media]
        pixel_values = (
            self.backbone.pixel_values(image_paths) if image_paths and load_pixels else None
        )
        audio_paths = [s.media["audio"] for s in samples if "audio" in s.media]
        video_paths = [s.media["video"] for s in samples if "video" in s.media]
        return Batch(
            input_ids=input_ids,
            attention_mask=attention,
            labels=labels if with_answer else None,
            pixel_values=pixel_values,
            samples=list(samples),
            audio=self.backbone.audio_values(audio_paths, _read_clip) if audio_paths else None,
            video=self.backbone.video_values(video_paths, read_video) if video_paths else None,
        )


def _read_clip(path: str) -> np.ndarray:
    """An audio clip's samples at the encoder's rate; another rate is an error naming the
    file (nothing is resampled silently)."""
    return read_audio(path, sample_rate=SAMPLE_RATE).samples
