"""Load an LMM from a local Hugging Face LLaVA directory and give every method one way to use it.

A `Backbone` owns the `LlavaForConditionalGeneration`, its tokenizer and image processor, and the
chat format. Methods never call the HF forward directly: they ask the backbone for the input
embeddings (text embeddings with the media features scattered into the media slots), may edit
them (prompts), and hand them back for the loss or for generation. The media slots are found
from `input_ids`, never by comparing embeddings, so a learned vector that happens to equal the
`<image>` embedding cannot be mistaken for an image slot.

Audio and video (`mcit.models.media`) are loaded only when the benchmark has them: an audio
encoder (a local Whisper directory; the tiny base ships its own) with its projection, and video
through the image tower with a projection of its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from transformers import AutoTokenizer, LlavaForConditionalGeneration
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from mcit.config import BackboneConfig, ChatFormat
from mcit.errors import BackboneError
from mcit.models import efficientnet_lite  # noqa: F401 - registers the tiny base's vision tower
from mcit.models.audio import AudioEncoder, load_audio_encoder
from mcit.models.media import MediaProjections, pool_frames
from mcit.models.tokenizer import MEDIA_TOKENS

# Labels of positions the loss skips (PyTorch's cross-entropy default; the collator masks the
# prompt, the image slots and the padding with it).
IGNORE_INDEX = -100
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


LLAVA_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)


class _BoundedCache:
    """Tensors by key, least recently used out once they pass `budget_mb`; the entries that the
    current call needs (`keep`) are never dropped."""

    def __init__(self, budget_mb: int):
        self.budget = budget_mb * 2**20
        self.items: OrderedDict[object, torch.Tensor] = OrderedDict()
        self.bytes = 0

    def __contains__(self, key: object) -> bool:
        return key in self.items

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    def put(self, key: object, value: torch.Tensor) -> None:
        self.items[key] = value
        self.bytes += value.numel() * value.element_size()

    def get(self, key: object) -> torch.Tensor:
        self.items.move_to_end(key)
        return self.items[key]

    def clear(self) -> None:
        self.items.clear()
        self.bytes = 0

    def trim(self, keep: int) -> None:
        while self.bytes > self.budget and len(self.items) > keep:
            _, old = self.items.popitem(last=False)
            self.bytes -= old.numel() * old.element_size()


class Backbone(nn.Module):
    """A frozen-by-default LLaVA with helpers for embedding, loss and generation."""

    def __init__(
        self,
        model: LlavaForConditionalGeneration,
        tokenizer,
        image_processor,
        config: BackboneConfig,
        clip_path: str | None,
        modalities: tuple[str, ...] = ("image",),
        audio_encoder: AudioEncoder | None = None,
    ):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.config = config
        self.chat = config.chat
        self.clip_path = clip_path
        self.image_token_id = model.config.image_token_id
        vision = model.config.vision_config
        patches = (vision.image_size // vision.patch_size) ** 2
        # A ViT's CLS token stays with the "full" strategy; a conv tower's map has none.
        has_cls = vision.model_type != efficientnet_lite.EfficientNetLiteConfig.model_type
        keep_cls = has_cls and model.config.vision_feature_select_strategy == "full"
        self.num_image_tokens = patches + (1 if keep_cls else 0)
        self._pixel_cache = _BoundedCache(config.pixel_cache_mb)
        self._feature_cache = _BoundedCache(config.feature_cache_mb)
        self._exact_new_tokens = False  # see `exact_new_tokens`
        self.modalities = tuple(dict.fromkeys(("image", *modalities)))
        if "audio" in self.modalities and audio_encoder is None:
            raise BackboneError(
                "model.backbone.audio_path: the benchmark has audio; set it to a local Whisper "
                "directory (the tiny base ships its own)"
            )
        self.audio_encoder = audio_encoder if "audio" in self.modalities else None
        self.media_token_ids = {"image": self.image_token_id}
        for m in self.modalities[1:]:
            self.media_token_ids[m] = tokenizer.convert_tokens_to_ids(MEDIA_TOKENS[m])
        self.media_tokens = {"image": self.num_image_tokens}
        self.media = None
        if len(self.modalities) > 1:
            frames = config.video_frames
            video_tokens = config.video_tokens or self.num_image_tokens
            if video_tokens % frames:
                raise BackboneError(
                    f"model.backbone.video_tokens: {video_tokens} is not a multiple of "
                    f"model.backbone.video_frames ({frames})"
                )
            if "audio" in self.modalities:
                self.media_tokens["audio"] = audio_encoder.tokens
            if "video" in self.modalities:
                self.media_tokens["video"] = video_tokens
            self.media = MediaProjections(
                self.hidden_size,
                self.projector,
                video_frames=frames,
                video_tokens_per_frame=video_tokens // frames,
                audio_width=audio_encoder.width if self.audio_encoder else None,
            )
            self._media_cache = _BoundedCache(config.pixel_cache_mb)
            self._audio_frames: dict[str, int] = {}

    # ------------------------------------------------------------------ parts
    @property
    def language_model(self) -> nn.Module:
        return self.model.model.language_model

    @property
    def vision_tower(self) -> nn.Module:
        return self.model.model.vision_tower

    @property
    def projector(self) -> nn.Module:
        return self.model.model.multi_modal_projector

    def train_projector(self) -> None:
        """Let the projector train, in float32 on a half-precision model: AdamW's steps at a
        projector's learning rate (LLaVA's 2e-5) are mostly below bfloat16's rounding step and
        would be lost (LoRA weights and prompts are float32 for the same reason)."""
        _train_in_float32(self.projector)

    def train_media_projections(self) -> None:
        """Let the audio and video projections train (MICL's model trains them with the method),
        in float32 on a half-precision model, for the reason `train_projector` gives."""
        if self.media is not None:
            _train_in_float32(self.media)

    @property
    def input_embeddings(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    @property
    def hidden_size(self) -> int:
        return self.model.config.text_config.hidden_size

    @property
    def num_layers(self) -> int:
        """The LM's decoder layers."""
        return self.model.config.text_config.num_hidden_layers

    @property
    def decoder_layers(self) -> nn.ModuleList:
        """The LM's decoder layers, in order (Llama, Mistral, Qwen, ... keep them in `layers`)."""
        layers = getattr(self.language_model, "layers", None)
        if not isinstance(layers, nn.ModuleList) or len(layers) != self.num_layers:
            raise BackboneError(
                f"{type(self.language_model).__name__} keeps no `layers` list of its "
                f"{self.num_layers} decoder layers: prompts at every layer cannot reach them"
            )
        return layers

    @property
    def device(self) -> torch.device:
        return self.input_embeddings.weight.device

    def freeze(self) -> None:
        """Freeze everything; methods switch on what they train."""
        for p in self.parameters():
            p.requires_grad_(False)

    # ------------------------------------------------------------------ media
    def pixel_values(self, paths: list[str]) -> torch.Tensor:
        """Processed images for `paths`, cached in memory up to `pixel_cache_mb` (least recently
        used first out): the tiny images of coin-mini all fit, 336-px CoIN images do not."""
        cache = self._pixel_cache
        missing = [p for p in dict.fromkeys(paths) if p not in cache]
        if missing:
            images = []
            for path in missing:
                with Image.open(path) as im:
                    images.append(im.convert("RGB"))
            out = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
            for path, px in zip(missing, out, strict=True):
                cache.put(path, px)
        batch = torch.stack([cache.get(p) for p in paths])
        cache.trim(keep=len(paths))
        return batch

    def audio_values(
        self, paths: list[str], read: Callable[[str], np.ndarray]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel spectrograms and clip lengths in frames for `paths` (`read` decodes one clip
        to float32 mono at 16 kHz), cached in memory like the images."""
        if self.audio_encoder is None:
            raise BackboneError("this backbone was loaded without audio (no audio task)")
        cache = self._media_cache
        missing = [p for p in dict.fromkeys(paths) if ("audio", p) not in cache]
        if missing:
            mels, frames = self.audio_encoder.log_mel([read(p) for p in missing])
            for path, mel, n in zip(missing, mels, frames.tolist(), strict=True):
                cache.put(("audio", path), mel)
                self._audio_frames[path] = int(n)
        mels = torch.stack([cache.get(("audio", p)) for p in paths])
        cache.trim(keep=len(paths))
        return mels, torch.tensor([self._audio_frames[p] for p in paths])

    def video_values(
        self, paths: list[str], read: Callable[[str, int], list[Image.Image]]
    ) -> torch.Tensor:
        """Processed frames [B, frames, 3, H, W] for `paths` (`read(path, n)` returns n RGB
        frames sampled over the video)."""
        if self.media is None or "video" not in self.media_tokens:
            raise BackboneError("this backbone was loaded without video (no video task)")
        frames = self.media.video.frames
        cache = self._media_cache
        missing = [p for p in dict.fromkeys(paths) if ("video", p) not in cache]
        for path in missing:
            pixels = self.image_processor(images=read(path, frames), return_tensors="pt")
            cache.put(("video", path), pixels["pixel_values"])
        batch = torch.stack([cache.get(("video", p)) for p in paths])
        cache.trim(keep=len(paths))
        return batch

    # ------------------------------------------------------------------ forward
    def embed(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor | None,
        audio: tuple[torch.Tensor, torch.Tensor] | None = None,
        video: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Token embeddings with the projected media features written into their slots:
        images (`pixel_values`), audio (spectrograms and lengths, see `audio_values`) and
        video (frames, see `video_values`)."""
        has_image = pixel_values is not None and (input_ids == self.image_token_id).any()
        if has_image:
            dtype = self.input_embeddings.weight.dtype
            embeds = self.embed_features(
                input_ids, self.vision_features(pixel_values.to(self.device, dtype))
            )
        else:
            embeds = self.input_embeddings(input_ids)
        if audio is not None:
            mels, frames = audio
            feats = self.audio_encoder(mels.to(self.device), frames.to(self.device))
            embeds = self._scatter(embeds, input_ids, "audio", _apply(self.media.audio, feats))
        if video is not None:
            b, f = video.shape[:2]
            frames = video.flatten(0, 1).to(self.device, self.input_embeddings.weight.dtype)
            feats = self.vision_features(frames)
            feats = pool_frames(
                feats.reshape(b, f, *feats.shape[1:]), self.media.video.tokens_per_frame
            )
            embeds = self._scatter(embeds, input_ids, "video", _apply(self.media.video, feats))
        return embeds

    def embed_batch(self, batch) -> torch.Tensor:
        """`embed` of a collated batch (`mcit.data.collate.Batch`): its text and every medium."""
        return self.embed(batch.input_ids, batch.pixel_values, batch.audio, batch.video)

    def _scatter(
        self, embeds: torch.Tensor, input_ids: torch.Tensor, modality: str, feats: torch.Tensor
    ) -> torch.Tensor:
        slots = input_ids == self.media_token_ids[modality]
        feats = feats.reshape(-1, feats.shape[-1]).to(embeds.dtype)
        if int(slots.sum()) != feats.shape[0]:
            raise BackboneError(
                f"{int(slots.sum())} {modality} slots in the batch but {feats.shape[0]} "
                f"{modality} features: every sample with {modality} needs exactly "
                f"{self.media_tokens[modality]} slots"
            )
        return embeds.masked_scatter(slots.unsqueeze(-1), feats)

    def embed_features(
        self, input_ids: torch.Tensor, vision_features: torch.Tensor
    ) -> torch.Tensor:
        """`embed` from the tower's features (see `vision_features`) instead of pixels."""
        embeds = self.input_embeddings(input_ids)
        slots = input_ids == self.image_token_id
        feats = _apply(self.projector, vision_features.to(self.device))
        feats = feats.reshape(-1, feats.shape[-1]).to(embeds.dtype)
        if int(slots.sum()) != feats.shape[0]:
            raise BackboneError(
                f"{int(slots.sum())} image slots in the batch but {feats.shape[0]} image features: "
                f"every sample with an image needs exactly {self.num_image_tokens} slots"
            )
        return embeds.masked_scatter(slots.unsqueeze(-1), feats)

    def vision_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The vision tower's selected features [B, tokens, width], before the projector (what
        LLaVA's `get_image_features` feeds its projector). A frozen tower's features are cached
        by the content of each processed image, so every picture goes through it once."""
        trained = any(p.requires_grad for p in self.vision_tower.parameters())
        if trained or not self.config.feature_cache_mb:
            return self._tower(pixel_values)
        cache = self._feature_cache
        keys = [  # the raw bytes: numpy has no bfloat16
            hashlib.blake2b(
                px.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes(), digest_size=16
            ).digest()
            for px in pixel_values
        ]
        first = {key: i for i, key in reversed(list(enumerate(keys)))}  # one pass per content
        missing = [i for key, i in first.items() if key not in cache]
        if missing:
            with torch.no_grad():
                out = self._tower(pixel_values[missing])
            for i, feats in zip(missing, out, strict=True):
                cache.put(keys[i], feats)
        batch = torch.stack([cache.get(key) for key in keys])
        cache.trim(keep=len(keys))
        return batch

    def clear_feature_cache(self) -> None:
        """Forget every cached tower output (`mcit bench` times each call as a new input)."""
        self._feature_cache.clear()

    def _tower(self, pixel_values: torch.Tensor) -> torch.Tensor:
        config = self.model.config
        hidden = self.vision_tower(pixel_values, output_hidden_states=True, return_dict=True)
        feats = hidden.hidden_states[config.vision_feature_layer]
        return feats[:, 1:] if config.vision_feature_select_strategy == "default" else feats

    def logits(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Next-token logits of the LM for given input embeddings (left or right padded)."""
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        hidden = self.language_model(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids
        ).last_hidden_state
        return self.model.lm_head(hidden)

    @staticmethod
    def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy over the positions whose label is not -100."""
        shift_logits = logits[:, :-1].float()
        shift_labels = labels[:, 1:]
        return nn.functional.cross_entropy(
            shift_logits.reshape(-1, shift_logits.shape[-1]),
            shift_labels.reshape(-1),
            ignore_index=IGNORE_INDEX,
        )

    @torch.no_grad()
    def generate(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        max_new_tokens: int = 16,
        **kwargs,
    ) -> list[str]:
        """Greedy decoding from left-padded input embeddings; returns only the new text."""
        kwargs.setdefault("do_sample", False)
        kwargs.setdefault("num_beams", 1)
        if self._exact_new_tokens:
            kwargs.setdefault("min_new_tokens", max_new_tokens)
        out = self.model.generate(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
            **kwargs,
        )
        # With inputs_embeds and no input_ids, generate returns only the new tokens.
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]

    @contextlib.contextmanager
    def exact_new_tokens(self) -> Iterator[None]:
        """Inside this block every `generate` call produces exactly `max_new_tokens` tokens per
        row (EOS is suppressed until then), whatever the method passes on: `mcit bench` times
        equal work for every method. Outside it, generation stops at EOS as usual."""
        previous, self._exact_new_tokens = self._exact_new_tokens, True
        try:
            yield
        finally:
            self._exact_new_tokens = previous


def _train_in_float32(module: nn.Module) -> None:
    """Make `module` trainable, upcast to float32 if it is held in half precision."""
    if any(p.dtype in (torch.bfloat16, torch.float16) for p in module.parameters()):
        module.float()
    module.requires_grad_(True)


def _apply(projection: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """`projection(features)` in the projection's own dtype: a trained projection stays float32
    on a half-precision model (`Backbone.train_projector`, `train_media_projections`)."""
    return projection(features.to(next(projection.parameters()).dtype))


def load_backbone(config: BackboneConfig, modalities: tuple[str, ...] = ("image",)) -> Backbone:
    """Load the configured backbone: `tiny`, the base shipped inside the package (a config
    other than a shipped recipe is built once into mcit's cache), or any local llava-hf
    directory. `modalities` are the media the benchmark has: audio loads an audio encoder
    (`audio_path`; the tiny base's own), audio and video their projections."""
    unknown = sorted(set(modalities) - set(MEDIA_TOKENS))
    if unknown:
        raise BackboneError(
            f"unknown modality {', '.join(unknown)} (known: {', '.join(MEDIA_TOKENS)})"
        )
    if config.name == "tiny":
        from mcit.pretrain.shipped import audio_dir, ensure_tiny_backbone

        llava_dir, clip_dir = ensure_tiny_backbone(tiny_config(config))
        chat = dataclasses.replace(config.chat, system=config.chat.system or "")
        audio = config.audio_path or audio_dir(llava_dir)
        return load_llava_dir(
            llava_dir, config, clip_dir=str(clip_dir), chat=chat, modalities=modalities, audio=audio
        )
    if config.name == "hf":
        if not config.path:
            raise BackboneError(
                "model.backbone.path: set it to a local llava-hf directory (name = hf)"
            )
        system = LLAVA_SYSTEM if config.chat.system is None else config.chat.system
        chat = dataclasses.replace(config.chat, system=system)
        return load_llava_dir(
            Path(config.path),
            config,
            clip_dir=config.clip_path,
            chat=chat,
            modalities=modalities,
            audio=config.audio_path,
        )
    raise BackboneError(f"model.backbone.name: unknown backbone '{config.name}' (known: tiny, hf)")


def tiny_config(config: BackboneConfig):
    """The TinyConfig that `model.backbone.recipe` and `model.backbone.tiny` describe."""
    from mcit.config import from_dict
    from mcit.errors import ConfigError
    from mcit.models.tiny import TinyConfig
    from mcit.pretrain.recipes import RECIPES

    if config.recipe not in RECIPES:
        raise ConfigError(
            f"model.backbone.recipe: unknown recipe '{config.recipe}' (known: {', '.join(RECIPES)})"
        )
    if not isinstance(config.tiny, dict):
        raise ConfigError("model.backbone.tiny: expected a mapping of TinyConfig fields")
    base = dataclasses.asdict(RECIPES[config.recipe])
    try:
        return from_dict(TinyConfig, {**base, **config.tiny}, where="model.backbone.tiny")
    except ConfigError:
        raise
    except ValueError as err:  # TinyConfig's own checks
        raise ConfigError(f"model.backbone.tiny: {err}") from err


def load_llava_dir(
    path: Path,
    config: BackboneConfig,
    clip_dir: str | None,
    chat: ChatFormat,
    modalities: tuple[str, ...] = ("image",),
    audio: str | Path | None = None,
) -> Backbone:
    path = Path(path)
    if not (path / "config.json").is_file():
        raise BackboneError(f"{path}: not a Hugging Face model directory (no config.json)")
    if config.dtype not in DTYPES:
        raise BackboneError(
            f"model.backbone.dtype: '{config.dtype}' is not one of {sorted(DTYPES)}"
        )
    try:
        model = LlavaForConditionalGeneration.from_pretrained(path, dtype=DTYPES[config.dtype])
        tokenizer = AutoTokenizer.from_pretrained(path)
        image_processor = CLIPImageProcessorPil.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise BackboneError(f"{path}: cannot load as a llava-hf directory: {err}") from err
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    missing = [
        t
        for t in (MEDIA_TOKENS["image"],)
        if tokenizer.convert_tokens_to_ids(t) != model.config.image_token_id
    ]
    if missing:
        raise BackboneError(
            f"{path}: tokenizer's '<image>' id does not match config.image_token_index"
        )
    _add_media_tokens(path, model, tokenizer, modalities)
    audio_encoder = None
    if "audio" in modalities:
        if audio is None:
            raise BackboneError(
                "model.backbone.audio_path: the benchmark has audio; set it to a local Whisper "
                "directory"
            )
        audio_encoder = load_audio_encoder(audio, config.audio_tokens)
    model.eval()
    if config.gradient_checkpointing:
        model.activation_checkpointing_enable()  # transformers 5: the new name
    backbone = Backbone(
        model, tokenizer, image_processor, config, clip_dir, modalities, audio_encoder
    )
    backbone.chat = chat
    backbone.freeze()
    return backbone


def _add_media_tokens(path: Path, model, tokenizer, modalities: tuple[str, ...]) -> None:
    """Give a tokenizer without `<audio>` / `<video>` the placeholders of the modalities the
    benchmark has (as LLaVA-NeXT-Video adds `<video>`). The LM's embedding grows by those rows;
    they are never read, since the slots' embeddings are replaced by the media features."""
    missing = [
        MEDIA_TOKENS[m]
        for m in modalities
        if m != "image" and MEDIA_TOKENS[m] not in tokenizer.get_vocab()
    ]
    if missing:
        tokenizer.add_special_tokens(
            {"additional_special_tokens": missing}, replace_extra_special_tokens=False
        )
        model.resize_token_embeddings(len(tokenizer))
