"""Shared fixtures: a micro tiny backbone and a micro coin-mini, built once per session.

The micro backbone uses the real pre-training code path (tokenizer, CLIP stage, features,
LLaVA stage, probe, model card, cache) with very few steps, so the tests exercise everything the default run does, in seconds.
"""

from __future__ import annotations

import os
from pathlib import Path

# Micro models gain nothing from a second thread, and several torch processes (DDP workers, a
# busy machine) each spinning two OpenMP threads on 2 cores made the suite 4x slower (measured).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def _micro_tiny() -> dict:
    """The `micro` recipe as overrides of the default one (what `model.backbone.tiny` takes)."""
    from dataclasses import asdict

    from mcit.pretrain.recipes import DEFAULT_RECIPE, RECIPES

    default = asdict(RECIPES[DEFAULT_RECIPE])
    return {k: v for k, v in asdict(RECIPES["micro"]).items() if v != default[k]}


MICRO_TINY = _micro_tiny()


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mcit-cache")
    os.environ["MCIT_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def micro_backbone_dirs(cache_dir):
    from mcit.pretrain.recipes import RECIPES
    from mcit.pretrain.shipped import ensure_tiny_backbone

    return ensure_tiny_backbone(RECIPES["micro"], progress=False)


@pytest.fixture(scope="session")
def micro_benchmark(tmp_path_factory) -> Path:
    """coin-mini with 3 tasks of 16 training and 6 test samples each."""
    from mcit.data.synthetic.coin_mini import generate_coin_mini

    out = tmp_path_factory.mktemp("bench") / "coin-micro"
    return generate_coin_mini(
        out,
        seed=0,
        order=["scienceqa", "gqa", "grounding"],
        train_size=16,
        test_size=6,
        progress=False,
    )


def micro_overrides(
    benchmark: Path, out_dir: Path, method: str = "finetune-lora", **extra
) -> list[str]:
    """key=value overrides for a micro run that takes seconds."""
    overrides = [
        f"data.benchmark={benchmark}",
        f"output_dir={out_dir}",
        f"method.name={method}",
        "train.batch_size=4",
        "train.max_steps_per_task=3",
        "train.lr=0.001",
        "eval.batch_size=4",
        "eval.max_new_tokens=24",
        f"model.backbone.tiny={MICRO_TINY}",
    ]
    overrides += [f"{k}={v}" for k, v in extra.items()]
    return overrides


@pytest.fixture(scope="session")
def hf_llava_dir(micro_backbone_dirs, tmp_path_factory):
    """A small random llava-hf directory saved by transformers: vision_feature_layer -2 and a
    vision tower of another width (24) and resolution (32 px) than the guidance CLIP (32, 64 px)."""
    from transformers import (
        AutoTokenizer,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
    )
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    llava_dir, _ = micro_backbone_dirs
    out = tmp_path_factory.mktemp("hf") / "llava"
    tokenizer = AutoTokenizer.from_pretrained(llava_dir)
    vision = CLIPVisionConfig(
        hidden_size=24,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=16,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=40,
        intermediate_size=80,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config = LlavaConfig(
        vision_config=vision.to_dict(),
        text_config=text.to_dict(),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=4,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    LlavaForConditionalGeneration(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    CLIPImageProcessorPil(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def bench_file(micro_backbone_dirs, micro_benchmark, tmp_path_factory) -> Path:
    """A real `mcit bench` file on the micro backbone (ModalPrompt and the base, T = 1, 2)."""
    from mcit.cli import main

    out = tmp_path_factory.mktemp("bench-run")
    configs = out / "method-configs"
    configs.mkdir()
    (configs / "moelora.yaml").write_text(
        "method:\n  name: moelora\n  args: {r: 8, alpha: 16, experts: 4}\n"
    )
    path = out / "bench.json"
    code = main(
        [
            "bench",
            "--methods", "modalprompt",
            "--tasks", "1,2",
            "--rounds", "3",
            "--warmup", "0",
            "--stage", "2",
            "--train-batch", "2",
            "--infer-batch", "2",
            "--new-tokens", "3",
            "--method-configs", str(configs),
            "--no-paper",
            "--quiet",
            "--json", str(path),
            "--markdown", str(out / "report" / "bench.md"),
            *micro_overrides(micro_benchmark, out),
        ]
    )  # fmt: skip
    assert code == 0
    return path


@pytest.fixture(scope="session")
def ddp_states(micro_backbone_dirs, micro_benchmark, cache_dir, tmp_path_factory):
    """Every registered method that trains, one DDP stage on two CPU ranks in one torchrun
    launch (test_ddp.run_ddp_worker): method name → (rank 0's, rank 1's) saved state."""
    from test_ddp import run_ddp_worker

    from mcit.methods.base import method_class, method_names

    trained = [m for m in method_names() if method_class(m)[0].trains]
    return run_ddp_worker(micro_benchmark, tmp_path_factory.mktemp("ddp"), cache_dir, *trained)
