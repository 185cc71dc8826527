"""Soft prompts on a frozen LMM, shared by the prompt methods (ModalPrompt, L2P, Progressive
Prompts): where a prompt goes in the input sequence and what it starts as.

- Splicing: a prompt `[B, P, d]` goes right after each row's BOS, before the system prompt
  [ModalPrompt code], whatever the padding side; the attention mask covers it and its labels are
  -100 (a prompt is never a target).
- Init [ModalPrompt code]: each prompt row starts as a copy of the input embedding of a random
  real token — never `<image>` or a special token — drawn from the global RNG, which the runner
  seeds per stage, so a resumed run draws the same rows.

peft's prompt tuning is not used: it prepends its virtual tokens before BOS, holds one prompt
per adapter and cannot make a sample's prompt depend on the sample, which all three methods need.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from mcit.errors import BackboneError
from mcit.models.backbone import IGNORE_INDEX, Backbone

if TYPE_CHECKING:  # models/ never imports data/ at run time
    from mcit.data.collate import Batch


def insertion_points(
    attention_mask: torch.Tensor, input_ids: torch.Tensor, bos_token_id: int | None
) -> torch.Tensor:
    """[B, 1]: where a prefix goes in each row, right after its BOS (or at its first real token
    when it has none), whatever the padding side."""
    first = attention_mask.long().argmax(dim=1)  # first real token (left padding)
    starts_with_bos = (
        input_ids.gather(1, first[:, None]).squeeze(1) == bos_token_id
        if bos_token_id is not None
        else torch.zeros_like(first, dtype=torch.bool)
    )
    return (first + starts_with_bos.long())[:, None]


@dataclass(frozen=True)
class PrefixSlots:
    """The positions a spliced prefix of `length` rows holds in a sequence of `width` positions:
    row b's prefix starts at `at[b]`. The masks are computed once per slots, however many
    layers `spread` rows into them."""

    at: torch.Tensor  # [B, 1]
    length: int
    width: int

    @functools.cached_property
    def positions(self) -> torch.Tensor:
        """[1, width]: 0 … width − 1."""
        return torch.arange(self.width, device=self.at.device)[None, :]

    @functools.cached_property
    def in_prefix(self) -> torch.Tensor:
        """[B, width] bool: True where a prefix row sits."""
        return (self.positions >= self.at) & (self.positions < self.at + self.length)

    @functools.cached_property
    def _row_index(self) -> torch.Tensor:
        """[B, width, 1]: the prefix row each position reads (the nearest one outside it)."""
        return (self.positions - self.at).clamp(0, self.length - 1)[..., None]

    def spread(self, rows: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """[B, width, d]: `rows` [B, length, d] at the prefix positions (elsewhere the nearest
        row; mask it with `in_prefix`). Differentiable in `rows`."""
        return rows.to(dtype).gather(1, self._row_index.expand(-1, -1, rows.shape[-1]))


def insert_after_bos(
    embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor | None,
    input_ids: torch.Tensor,
    prefix: torch.Tensor,
    bos_token_id: int | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Splice `prefix` [B, P, d] into each row right after its BOS (or before its first token
    when it has none), whatever the padding side: the row's padding stays where it was, the
    attention mask covers the prefix and its labels are -100. Differentiable in `prefix`."""
    _, width, dim = embeds.shape
    n = prefix.shape[1]
    if n == 0:
        return embeds, attention_mask, labels
    at = insertion_points(attention_mask, input_ids, bos_token_id)
    slots = PrefixSlots(at, n, width + n)
    pos, in_prefix = slots.positions, slots.in_prefix  # [1, W + P], [B, W + P]
    source = torch.where(pos < at, pos, pos - n).clamp(0, width - 1)  # [B, W + P]
    from_tokens = embeds.gather(1, source[..., None].expand(-1, -1, dim))
    new_embeds = torch.where(in_prefix[..., None], slots.spread(prefix, embeds.dtype), from_tokens)
    new_mask = torch.where(in_prefix, 1, attention_mask.gather(1, source)).to(attention_mask.dtype)
    new_labels = None
    if labels is not None:
        new_labels = torch.where(in_prefix, IGNORE_INDEX, labels.gather(1, source))
    return new_embeds, new_mask, new_labels


def prompted_inputs(
    backbone: Backbone, batch: Batch, prefix: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The batch's input embeddings, attention mask and labels with `prefix` [B, P, d] spliced
    in after BOS."""
    embeds = backbone.embed_batch(batch)
    return insert_after_bos(
        embeds,
        batch.attention_mask,
        batch.labels,
        batch.input_ids,
        prefix.to(embeds.device),
        backbone.tokenizer.bos_token_id,
    )


@contextlib.contextmanager
def prompts_at_every_layer(
    layers: nn.ModuleList, slots: PrefixSlots, rows_for_layer: Callable[[int], torch.Tensor]
) -> Iterator[None]:
    """Deep prompts (VPT-deep, Jia et al. 2022, §3.2; P-Tuning v2, Liu et al. 2022, §3.2):
    inside this block, at the input of decoder layer i ≥ 1, the hidden states at the prefix
    positions `slots` are replaced by `rows_for_layer(i)` [B, P, d], layer i's own learned
    prompt, so every layer reads a learned prefix instead of what the layers below made of the
    input one. The rows are asked for layer by layer, so a batch's prompts for all layers are
    never held at once. Only a forward over the whole prompted sequence (training, or
    generation's prefill) is touched: the decoding steps after it, one position each, read the
    prefix from the KV cache. Any other shape (beams or several sequences per input, a chunked
    prefill) would silently lose the layer prompts, so it is refused."""
    in_prefix = slots.in_prefix[..., None]
    expected = (slots.at.shape[0], slots.width)

    def hook_for(i: int):
        def hook(module: nn.Module, args: tuple, kwargs: dict):
            hidden = args[0] if args else kwargs["hidden_states"]
            if hidden.shape[1] == 1 and slots.width > 1:
                return None  # a decoding step: the prefix is in the KV cache
            if tuple(hidden.shape[:2]) != expected:
                raise BackboneError(
                    f"prompts at every layer: decoder layer {i} got hidden states of "
                    f"{tuple(hidden.shape[:2])} (batch, positions), not the prompted "
                    f"{expected} or one new position; generation with beams or several "
                    "sequences per input, or a chunked prefill, is not supported"
                )
            new = torch.where(in_prefix, slots.spread(rows_for_layer(i), hidden.dtype), hidden)
            if args:
                return (new, *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": new}

        return hook

    handles = [
        layers[i].register_forward_pre_hook(hook_for(i), with_kwargs=True)
        for i in range(1, len(layers))
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def real_token_ids(backbone: Backbone, method: str) -> torch.Tensor:
    """Ids a prompt row may be copied from: real vocabulary, never `<image>` or a special."""
    tokenizer = backbone.tokenizer
    rows = backbone.input_embeddings.num_embeddings
    special = set(tokenizer.all_special_ids) | {backbone.image_token_id}
    special |= set(getattr(tokenizer, "added_tokens_decoder", {}))
    ids = [i for i in range(min(len(tokenizer), rows)) if i not in special]
    if not ids:
        raise BackboneError(f"{method}: the tokenizer has no ordinary token to copy")
    return torch.tensor(ids)


def random_token_rows(backbone: Backbone, token_ids: torch.Tensor, n: int) -> torch.Tensor:
    """`n` prompt rows [n, d], float32, each a copy of the input embedding of a token drawn
    uniformly from `token_ids` with the global RNG [ModalPrompt code]."""
    table = backbone.input_embeddings.weight
    picks = token_ids[torch.randint(len(token_ids), (n,))]
    return table.detach()[picks.to(table.device)].float().clone()


class PerTaskPrompts:
    """Mixin for a ContinualMethod that learns one prompt P_t ([L, d]) per task, in stream
    order, and never changes a learned one again (ModalPrompt, Progressive Prompts). Call
    `_init_task_prompts` in `attach` and `_new_task_prompt` in `begin_task`; a method with more
    per-task state extends `_freeze_learned`."""

    prompts: torch.nn.ParameterList

    def _init_task_prompts(self) -> None:
        self.prompts = torch.nn.ParameterList()  # P_t, one [L, d] per task, in stream order
        self._init_token_ids = real_token_ids(self.backbone, self.name)  # type: ignore[attr-defined]

    @property
    def num_tasks(self) -> int:
        return len(self.prompts)

    def _new_task_prompt(self, task_id: int, length: int) -> torch.nn.Parameter:
        """Freeze the learned prompts and append task `task_id`'s: each row a copy of a random
        real token's embedding (global RNG, which the runner seeds per stage, so a resumed run
        draws the same rows)."""
        if task_id != self.num_tasks:
            raise ValueError(
                f"{self.name}: begin_task({task_id}) after {self.num_tasks} task(s) have prompts"  # type: ignore[attr-defined]
            )
        self._freeze_learned(self.num_tasks)
        prompt = torch.nn.Parameter(
            random_token_rows(self.backbone, self._init_token_ids, length)  # type: ignore[attr-defined]
        )
        self.prompts.append(prompt)
        return prompt

    def end_task(self, task_id, task, train_samples) -> None:
        self._freeze_learned(task_id + 1)
        super().end_task(task_id, task, train_samples)  # type: ignore[misc]

    def load_extra_state(self, state) -> None:
        super().load_extra_state(state)  # type: ignore[misc]
        self._freeze_learned(min(len(self.tasks_seen), self.num_tasks))  # type: ignore[attr-defined]

    def _freeze_learned(self, n: int) -> None:
        """The prompts of the first `n` tasks never change again."""
        for i in range(n):
            self.prompts[i].requires_grad_(False)
