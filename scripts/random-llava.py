"""Write a LLaVA-1.5-7B-shaped llava-hf directory and a CLIP-L/336-shaped CLIP directory with
random weights, for timing only (`mcit bench` on the paper's architecture where the real
checkpoints cannot be downloaded). Speed does not depend on the weights' values; accuracy does,
so never train or evaluate with these.

    python scripts/random-llava.py OUT_DIR [--layers N] [--dtype bfloat16] [--device cuda] [--tiny]

writes OUT_DIR/llava (LlavaForConditionalGeneration: CLIP-L/14-336 tower, MLP projector,
Llama-2-7B-shaped LM; `--layers` shrinks the LM for a dry run) and OUT_DIR/clip (CLIPModel,
CLIP-L/14-336, the guidance encoder); `--tiny` writes the same layout at a few MB, for CPU dry
runs (scripts/gpu-check.sh --cpu). Both use the shipped tiny base's tokenizer: its `<image>` id
becomes `image_token_index`, and the LM's 32064-row vocabulary is kept.
Then, e.g.:

    mcit bench --methods modalprompt,moelora --dtype bfloat16 model.backbone.name=hf \
        model.backbone.path=OUT_DIR/llava model.backbone.clip_path=OUT_DIR/clip
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer, CLIPModel, LlavaForConditionalGeneration
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from mcit.bench.params import clip_l_336_config, llava_15_7b_config
from mcit.models.tokenizer import MEDIA_TOKENS
from mcit.pretrain.recipes import DEFAULT_RECIPE, RECIPES
from mcit.pretrain.shipped import ensure_tiny_backbone

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--layers", type=int, default=None, help="LM layers (default: 32)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="the same layout at a few MB (widths 32-64, 2 layers, 28-px images): CPU dry runs",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)

    started = time.time()
    tiny_llava, _ = ensure_tiny_backbone(RECIPES[DEFAULT_RECIPE])  # the shipped base: its tokenizer
    tokenizer = AutoTokenizer.from_pretrained(tiny_llava)
    side = 28 if args.tiny else 336
    processor = CLIPImageProcessorPil(
        size={"shortest_edge": side}, crop_size={"height": side, "width": side}
    )

    config = llava_15_7b_config()
    clip_config = clip_l_336_config()
    if args.tiny:
        _shrink(config.text_config, 64)
        for part in (config.vision_config, clip_config.vision_config, clip_config.text_config):
            _shrink(part, 32)
        for part in (config.vision_config, clip_config.vision_config):
            part.image_size = side
        config.image_seq_length = (side // config.vision_config.patch_size) ** 2
        clip_config.projection_dim = clip_config.vision_config.projection_dim = 32
    config.image_token_id = tokenizer.convert_tokens_to_ids(MEDIA_TOKENS["image"])
    text = config.text_config
    text.pad_token_id, text.bos_token_id = tokenizer.pad_token_id, tokenizer.bos_token_id
    text.eos_token_id = tokenizer.eos_token_id
    if args.layers is not None:
        text.num_hidden_layers = args.layers
    torch.manual_seed(0)
    # Built directly in the target dtype: a 7B model in fp32 first would take 28 GB.
    torch.set_default_dtype(DTYPES[args.dtype])
    with torch.device(args.device):
        llava = LlavaForConditionalGeneration(config)
    out = args.out / "llava"
    llava.save_pretrained(out)
    tokenizer.save_pretrained(out)
    processor.save_pretrained(out)
    del llava

    clip_config.text_config.eos_token_id = tokenizer.eos_token_id
    clip_config.text_config.pad_token_id = tokenizer.pad_token_id
    with torch.device(args.device):
        clip = CLIPModel(clip_config)
    torch.set_default_dtype(torch.float32)
    clip.save_pretrained(args.out / "clip")
    tokenizer.save_pretrained(args.out / "clip")
    processor.save_pretrained(args.out / "clip")
    print(
        f"random LLaVA-1.5-7B-shaped model in {out}, CLIP-L/336-shaped guidance CLIP in "
        f"{args.out / 'clip'} ({time.time() - started:.0f} s)"
    )
    return 0


def _shrink(part, width: int) -> None:
    """A transformer config cut to `width`, two layers and two heads (its layout unchanged)."""
    part.hidden_size, part.intermediate_size = width, 2 * width
    part.num_hidden_layers = part.num_attention_heads = 2
    if hasattr(part, "num_key_value_heads"):
        part.num_key_value_heads = 2


if __name__ == "__main__":
    sys.exit(main())
