"""The backbone's media other than images: audio and video features, and their projections
into the LM.

MICL's model [Pian et al., official code] gives every modality its own frozen encoder and its
own trainable projection into the LM, with a modality cue text (" audio: ", " video: ") before
the features. mcit follows it:

- audio: the Whisper encoder's pooled tokens (`mcit.models.audio`), then LayerNorm + Linear into
  the LM (MICL's projection);
- video: `frames` frames sampled evenly through the image tower (the same frozen encoder as the
  images, as MICL sends 4 frames through EVA-CLIP), each frame's token grid average-pooled to
  `tokens // frames` tokens, kept in time order. The video projection starts as a copy of the
  image projector (so a frame reads as a small picture to a base that has learned images), plus
  one learned vector per frame position, added after it and starting at zero: mcit's choice, so
  that what happens first and what happens last (moves, appears, disappears) stay apart, which
  plain mean-pooling over frames would lose.

Both projections start from a fixed seed, so every process and every restore builds the same
ones; they are frozen like the rest of the backbone until a method trains them.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

# Seed of the projections' initial weights (the same in every process and run).
PROJECTION_SEED = 20_240_601


def pool_frames(features: torch.Tensor, tokens_per_frame: int) -> torch.Tensor:
    """[B, F, N, w] frame features → [B, F · tokens_per_frame, w]: each frame's square token
    grid average-pooled to a square grid of `tokens_per_frame` (a 1-D pool when either is not
    square), frames kept in order."""
    b, f, n, w = features.shape
    side, out_side = math.isqrt(n), math.isqrt(tokens_per_frame)
    flat = features.reshape(b * f, n, w)
    if side * side == n and out_side * out_side == tokens_per_frame:
        grid = flat.transpose(1, 2).reshape(b * f, w, side, side)
        pooled = nn.functional.adaptive_avg_pool2d(grid, out_side).flatten(2).transpose(1, 2)
    else:
        pooled = nn.functional.adaptive_avg_pool1d(flat.transpose(1, 2), tokens_per_frame)
        pooled = pooled.transpose(1, 2)
    return pooled.reshape(b, f * tokens_per_frame, w)


class VideoProjection(nn.Module):
    """The image projector's copy applied to every pooled frame token, plus a learned vector
    per frame position (zero at first)."""

    def __init__(self, image_projector: nn.Module, frames: int, tokens_per_frame: int, hidden: int):
        super().__init__()
        self.frames = frames
        self.tokens_per_frame = tokens_per_frame
        self.projector = copy.deepcopy(image_projector)
        self.frame_position = nn.Parameter(torch.zeros(frames, hidden))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        out = self.projector(pooled)
        position = self.frame_position.repeat_interleave(self.tokens_per_frame, dim=0)
        return out + position.to(out.dtype)


class MediaProjections(nn.Module):
    """Per-modality projections into the LM for audio and video (images keep LLaVA's own)."""

    def __init__(
        self,
        hidden: int,
        image_projector: nn.Module,
        video_frames: int,
        video_tokens_per_frame: int,
        audio_width: int | None,
    ):
        super().__init__()
        state = torch.random.get_rng_state()
        torch.manual_seed(PROJECTION_SEED)
        try:
            self.audio = (
                nn.Sequential(nn.LayerNorm(audio_width), nn.Linear(audio_width, hidden))
                if audio_width
                else None
            )
            self.video = VideoProjection(
                image_projector, video_frames, video_tokens_per_frame, hidden
            )
        finally:
            torch.random.set_rng_state(state)
