"""The embedded default backbone's architecture: a tiny LLaVA and the tiny CLIP beside it.

- **LLaVA** (`LlavaForConditionalGeneration`): a vision tower, LLaVA's MLP projector, a small
  Llama LM. The default tower is ImageNet-trained EfficientNet-Lite0 cut at its stride-16 block
  (`models/efficientnet_lite.py`), frozen; `vision="clip"` uses the tiny CLIP's ViT instead
  (the micro test backbones and the first recipes did).
- **CLIP** (`CLIPModel`): a tiny ViT + text transformer trained contrastively; the guidance
  encoder that ModalPrompt and L2P read, as CLIP-L is in the papers.

This module holds only the architecture and the cache locations. How the weights are learned
is `mcit.pretrain` (the recipe), and the base that ships inside the package is
`mcit.pretrain.shipped`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from transformers import (
    CLIPConfig,
    CLIPTextConfig,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    PretrainedConfig,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from mcit.models.efficientnet_lite import EfficientNetLiteConfig
from mcit.models.tokenizer import MEDIA_TOKENS

# Bump when the pre-training recipe or the generic corpus changes meaning: it is part of the key.
RECIPE_VERSION = "tiny-2"
CAPTION_INSTRUCTION = "Describe the picture."
VISION_TOWERS = ("efficientnet-lite0", "clip")
# The answer styles the mixture implements (mcit.data.synthetic.pretrain.ANSWER_STYLES; models/
# may not import data/, so a test keeps the two equal).
ANSWER_STYLES = ("sentence", "referent-value")


@dataclass
class TinyConfig:
    """Architecture and pre-training recipe of a tiny base (one key names both)."""

    seed: int = 0
    image_size: int = 64  # the tiny CLIP's input (and the benchmark's pictures)
    patch_size: int = 16
    vision: str = "efficientnet-lite0"  # the LLaVA vision tower: efficientnet-lite0 | clip
    vision_image_size: int = 128  # EfficientNet input: 64-px pictures are upsampled (see docs)
    vision_blocks: int = 11  # MBConv blocks kept: 11 ends at the stride-16, 112-channel map
    vision_group: int = 2  # g x g cells per token: 8 x 8 cells -> 16 tokens of 448
    vision_hidden: int = 128  # tiny CLIP's ViT
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
    llava_bf16: bool = False  # bf16 autocast in the LLaVA stage (fp32 weights and AdamW)
    report_samples: int = 40  # held-out questions per skill (and 4x as many captions)
    # How the mixture words the shape scenes' answers: "sentence" ("The circle is red.") or
    # "referent-value" ("The circle red."); mcit.data.synthetic.pretrain.ANSWER_STYLES.
    answer_style: str = "sentence"
    # The share of skill turns asked for a short answer ("Answer: <value>.") after a request
    # unlike the tasks' own (mcit.data.synthetic.pretrain.TERSE_REQUESTS); sentence style only.
    short_answers: float = 0.0
    # A first LLaVA phase of `lookup_steps` steps on `lookup_samples` shape scenes whose answers
    # are in the referent-value style, before the `llava_steps` of the mixture. The value right
    # after the word naming what is looked up teaches a 4-layer LM the lookup in one step; the
    # sentence answers after it reuse that lookup (docs/base.md, "A lookup phase first").
    lookup_samples: int = 0
    lookup_steps: int = 0
    # The audio encoder (a Whisper encoder, `mcit.models.audio`), trained contrastively against
    # the tiny CLIP's frozen text tower on synthesised sounds (`mcit.pretrain.audio`).
    audio_mels: int = 40
    audio_seconds: int = 2  # its window
    audio_hidden: int = 128
    audio_layers: int = 2
    audio_heads: int = 4
    audio_samples: int = 4000
    audio_steps: int = 300
    audio_batch: int = 64
    audio_lr: float = 1e-3

    def __post_init__(self) -> None:
        if self.vision not in VISION_TOWERS:
            raise ValueError(f"vision: '{self.vision}' is not one of {list(VISION_TOWERS)}")
        if self.answer_style not in ANSWER_STYLES:
            raise ValueError(
                f"answer_style: '{self.answer_style}' is not one of {list(ANSWER_STYLES)}"
            )
        if not 0.0 <= self.short_answers <= 1.0:
            raise ValueError(f"short_answers: {self.short_answers} is not a share in [0, 1]")
        if self.short_answers and self.answer_style != "sentence":
            raise ValueError("short_answers: written for answer_style 'sentence' only")
        if self.lookup_samples < 0 or self.lookup_steps < 0:
            raise ValueError("lookup_samples and lookup_steps: counts, not negative")
        if bool(self.lookup_samples) != bool(self.lookup_steps):
            raise ValueError(
                f"lookup_samples ({self.lookup_samples}) and lookup_steps ({self.lookup_steps}): "
                "a lookup phase needs both, or neither"
            )

    def key(self, code: str) -> str:
        """A short hash of this config and `code` (a hash of the recipe's source)."""
        blob = json.dumps({"recipe": RECIPE_VERSION, "code": code, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def clip_config(config: TinyConfig, tokenizer) -> CLIPConfig:
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


def vision_config(config: TinyConfig, clip: CLIPConfig) -> PretrainedConfig:
    if config.vision == "clip":
        return clip.vision_config
    return EfficientNetLiteConfig(
        num_blocks=config.vision_blocks,
        group=config.vision_group,
        image_size=config.vision_image_size,
    )


def llava_config(config: TinyConfig, tokenizer, vision: PretrainedConfig) -> LlavaConfig:
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
    clip_tower = config.vision == "clip"
    return LlavaConfig(
        vision_config=vision.to_dict(),
        text_config=lm.to_dict(),
        image_token_index=tokenizer.convert_tokens_to_ids(MEDIA_TOKENS["image"]),
        # The last vision layer's output, not the second-to-last: with -2 the last layer gets no
        # gradient, which breaks DDP unless it is frozen (measured).
        vision_feature_layer=-1,
        # A ViT's first token is CLS (dropped, as LLaVA does); a conv map has none.
        vision_feature_select_strategy="default" if clip_tower else "full",
        image_seq_length=(vision.image_size // vision.patch_size) ** 2,
        tie_word_embeddings=False,
    )


def clip_image_processor(config: TinyConfig) -> CLIPImageProcessorPil:
    size = config.image_size
    return CLIPImageProcessorPil(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}
    )


def llava_image_processor(config: TinyConfig) -> CLIPImageProcessorPil:
    """What the LLaVA's tower reads: CLIP's processor for a CLIP tower; for EfficientNet-Lite,
    the picture resized to `vision_image_size` (bicubic) and scaled to [-1, 1] as the Lite
    models were trained."""
    if config.vision == "clip":
        return clip_image_processor(config)
    size = config.vision_image_size
    return CLIPImageProcessorPil(
        size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
