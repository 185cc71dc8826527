"""Frozen CLIP guidance features of a sample: its image and its instruction (ModalPrompt's
dual-modality guidance).

- `f_img`: CLIP's projected image embedding (`visual_projection` of the pooled vision output).
- `f_txt`: the text tower's pooled output of the user instruction only — no system prompt, no
  role tags, no `<image>` placeholder — truncated to CLIP's 77 positions. [code] uses the
  pooled output *without* CLIP's text projection (`text_projection=False`, the default);
  [paper] Eq. 4 reads as the projected feature (`text_projection=True`).

The encoder is frozen and deliberately not an `nn.Module`: a method that holds one never
trains it, never saves it in its state and never hands it to DDP. Features are cached by
content — the image file path and the instruction text — because they are frozen, so a cached
feature is exactly the one that would be recomputed; keying by content rather than by sample
id keeps two benchmarks' equal ids apart. The cache is bounded (least recently used out).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image
from transformers import AutoTokenizer, CLIPModel
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from mcit.errors import BackboneError
from mcit.models.tokenizer import MEDIA_TOKENS

if TYPE_CHECKING:  # models/ never imports data/ at run time
    from mcit.data.sample import Sample
    from mcit.models.backbone import Backbone

CLIP_TEXT_POSITIONS = 77  # CLIP's text context; longer instructions are truncated [code]


@dataclass
class GuidanceFeatures:
    """Features of a batch of samples; `image` rows of samples without an image are zero."""

    image: torch.Tensor | None  # [B, c] float32, or None when not requested
    text: torch.Tensor | None  # [B, c] float32, or None when not requested
    has_image: torch.Tensor  # [B] bool


def instruction_text(sample: Sample) -> str:
    """The user instruction only: the last user turn, what the sample asks at test time, with
    any media placeholder removed (the collator adds the placeholder, so it is normally absent)."""
    text = sample.instruction
    for tag in MEDIA_TOKENS.values():
        text = text.replace(tag, "")
    return text.strip()


class GuidanceEncoder:
    """A frozen local CLIP that turns samples into `f_img` / `f_txt` (float32, width `dim`)."""

    def __init__(
        self,
        clip_dir: str | Path,
        text_projection: bool = False,
        dtype: torch.dtype = torch.float32,
        cache_size: int = 200_000,
        shared_pixels: tuple[Any, Callable[[list[str]], torch.Tensor]] | None = None,
    ):
        clip_dir = Path(clip_dir)
        if not (clip_dir / "config.json").is_file():
            raise BackboneError(f"{clip_dir}: not a CLIP directory (no config.json)")
        try:
            self.model = CLIPModel.from_pretrained(clip_dir, dtype=dtype)
            self.tokenizer = AutoTokenizer.from_pretrained(clip_dir)
            self.processor = CLIPImageProcessorPil.from_pretrained(clip_dir)
        except (OSError, ValueError) as err:
            raise BackboneError(f"{clip_dir}: cannot load as a CLIP directory: {err}") from err
        self.model.eval().requires_grad_(False)
        self.clip_dir = clip_dir
        self.text_projection = text_projection
        self.dim = self.model.config.projection_dim
        text_width = self.model.config.text_config.hidden_size
        if not text_projection and text_width != self.dim:
            raise BackboneError(
                f"{clip_dir}: the text tower's pooled output has width {text_width} but the image "
                f"embedding has {self.dim}; cosine needs one width, so set "
                f"method.args.text_projection=true for this CLIP"
            )
        self.max_text_tokens = min(
            CLIP_TEXT_POSITIONS, self.model.config.text_config.max_position_embeddings
        )
        # `shared_pixels` = (image processor, cached pixel function) of the caller, e.g. the
        # backbone's: used when that processor preprocesses exactly as this CLIP's (the tiny
        # backbone's does), so each image is decoded once per run, not twice.
        self._pixel_values = self._load_pixels
        if shared_pixels is not None and shared_pixels[0].to_dict() == self.processor.to_dict():
            self._pixel_values = shared_pixels[1]
        self.cache_size = cache_size
        self._image_cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._text_cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def clear_cache(self) -> None:
        """Forget every cached feature, so the next call encodes its inputs as new ones would
        be (`mcit bench` times each call with the CLIP forward pass it costs on unseen data)."""
        self._image_cache.clear()
        self._text_cache.clear()

    # ------------------------------------------------------------------ features
    @torch.no_grad()
    def features(
        self,
        samples: list[Sample],
        device: torch.device | str,
        image: bool = True,
        text: bool = True,
    ) -> GuidanceFeatures:
        """`f_img` and/or `f_txt` of `samples` on `device` (no gradient, never trained)."""
        if self.device != torch.device(device):
            self.model.to(device)
        has_image = torch.tensor(["image" in s.media for s in samples], dtype=torch.bool)
        img = txt = None
        if image:
            paths = [s.media.get("image") for s in samples]
            found = self._cached(self._image_cache, [p for p in paths if p], self._encode_images)
            img = torch.zeros(len(samples), self.dim)
            for row, path in enumerate(paths):
                if path:
                    img[row] = found[path]
            img = img.to(device)
        if text:
            texts = [instruction_text(s) for s in samples]
            found = self._cached(self._text_cache, texts, self._encode_texts)
            txt = torch.stack([found[t] for t in texts]).to(device)
        return GuidanceFeatures(image=img, text=txt, has_image=has_image.to(device))

    def _cached(
        self,
        cache: OrderedDict[str, torch.Tensor],
        keys: list[str],
        encode: Callable[[list[str]], torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        missing = [k for k in dict.fromkeys(keys) if k not in cache]
        if missing:
            for key, feature in zip(missing, encode(missing), strict=True):
                cache[key] = feature.float().cpu()
        out = {}
        for key in keys:
            cache.move_to_end(key)
            out[key] = cache[key]
        while len(cache) > max(self.cache_size, len(out)):
            cache.popitem(last=False)
        return out

    def _load_pixels(self, paths: list[str]) -> torch.Tensor:
        images = []
        for path in paths:
            with Image.open(path) as im:
                images.append(im.convert("RGB"))
        return self.processor(images=images, return_tensors="pt")["pixel_values"]

    def _encode_images(self, paths: list[str]) -> torch.Tensor:
        """CLIP's projected image embedding (Eq. 4, f_img)."""
        pixels = self._pixel_values(paths).to(self.device, self.model.dtype)
        return self.model.get_image_features(pixel_values=pixels).pooler_output

    def _encode_texts(self, texts: list[str]) -> torch.Tensor:
        """The text tower's pooled output at EOS (Eq. 4, f_txt), projected or not."""
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        rows = []
        for text in texts:
            ids = self.tokenizer(
                text, add_special_tokens=True, truncation=True, max_length=self.max_text_tokens
            )["input_ids"]
            # CLIP pools at EOS; tokenizers without a template (the tiny one) do not add it.
            if eos is not None and (not ids or ids[-1] != eos):
                ids = ids[: self.max_text_tokens - 1] + [eos]
            rows.append(ids)
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), pad if pad is not None else 0)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, ids in enumerate(rows):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            mask[i, : len(ids)] = 1
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        if self.text_projection:
            return self.model.get_text_features(
                input_ids=input_ids, attention_mask=mask
            ).pooler_output
        return self.model.text_model(input_ids=input_ids, attention_mask=mask).pooler_output


def backbone_guidance(
    backbone: Backbone, method: str, purpose: str, text_projection: bool, cache_size: int
) -> GuidanceEncoder:
    """The frozen CLIP of `backbone`'s `clip_path` for a method's `purpose` (e.g. "keys"),
    sharing the backbone's pixel cache; BackboneError, naming the method, when the backbone
    has no CLIP directory. The method keeps it as a plain attribute, not a submodule: the
    frozen CLIP is never trained, saved or given to DDP."""
    if not backbone.clip_path:
        raise BackboneError(
            f"model.backbone.clip_path: {method} needs a local CLIP directory for its "
            f"{purpose} (the tiny backbone brings its own; set it for name = hf)"
        )
    return GuidanceEncoder(
        backbone.clip_path,
        text_projection=text_projection,
        dtype=backbone.input_embeddings.weight.dtype,
        cache_size=cache_size,
        shared_pixels=(backbone.image_processor, backbone.pixel_values),
    )
