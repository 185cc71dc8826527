"""What one timed call does: an optimizer step as the trainer takes it, or a generation of a
fixed number of tokens; and an untimed probe of what a generation fed the LM.

Caches that would make a repeated input cheaper than a new one — the guidance encoders'
feature caches and the backbone's cache of frozen vision-tower features — are emptied before
every call (untimed), so each call pays what a new input costs. Collation is not part of a call: every method gets the same collated tensors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from mcit.bench.params import guidance_encoders
from mcit.bench.timing import Call
from mcit.config import TrainConfig
from mcit.data.collate import Batch
from mcit.methods.base import ContinualMethod
from mcit.models.backbone import Backbone


def clear_feature_caches(method: ContinualMethod) -> None:
    for encoder in guidance_encoders(method):
        encoder.clear_cache()
    method.backbone.clear_feature_cache()


def inference_call(method: ContinualMethod, batch: Batch, new_tokens: int) -> Call:
    """Greedy generation of exactly `new_tokens` tokens per row, guidance caches emptied."""

    def setup() -> None:
        method.eval()
        clear_feature_caches(method)

    def run() -> None:
        with method.backbone.exact_new_tokens():
            method.generate(batch, max_new_tokens=new_tokens)

    return Call(run=run, setup=setup)


class TrainStep:
    """One optimizer step as `mcit.train.trainer.Trainer` takes it (single process, one
    micro-batch): loss, backward, `before_optimizer_step`, clipping, AdamW, zero_grad."""

    def __init__(self, method: ContinualMethod, batch: Batch, config: TrainConfig):
        self.method = method
        self.batch = batch
        self.max_grad_norm = config.max_grad_norm
        self.params = method.trainable_parameters()
        if not self.params:
            raise ValueError(f"method '{method.name}' has nothing to train")
        self.optimizer = torch.optim.AdamW(
            self.params, lr=config.lr, weight_decay=config.weight_decay
        )

    def setup(self) -> None:
        self.method.train()
        clear_feature_caches(self.method)

    def __call__(self) -> None:
        out = self.method(self.batch)
        out.loss.backward()
        self.method.before_optimizer_step()
        if self.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state_bytes(self) -> int:
        return sum(
            t.numel() * t.element_size()
            for state in self.optimizer.state.values()
            for t in state.values()
            if isinstance(t, torch.Tensor)
        )


@contextlib.contextmanager
def lm_input_probe(backbone: Backbone) -> Iterator[dict[str, int | None]]:
    """Counts the LLaVA forward calls of a generation and the length of the first (the
    prefill): what the method actually fed the LM, prompts included."""
    record: dict[str, int | None] = {"lm_calls": 0, "prefill_tokens": None}

    def hook(_module, args, kwargs):
        record["lm_calls"] += 1
        if record["prefill_tokens"] is None:
            x = kwargs.get("inputs_embeds")
            x = kwargs.get("input_ids") if x is None else x
            if x is None and args:
                x = args[0]
            record["prefill_tokens"] = int(x.shape[1]) if x is not None else None

    handle = backbone.model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield record
    finally:
        handle.remove()


def probe_generation(method: ContinualMethod, batch: Batch, new_tokens: int) -> dict[str, Any]:
    """One untimed generation: LM calls (= new_tokens when the length is fixed) and prefill."""
    method.eval()
    with lm_input_probe(method.backbone) as record, method.backbone.exact_new_tokens():
        method.generate(batch, max_new_tokens=new_tokens)
    return dict(record)
