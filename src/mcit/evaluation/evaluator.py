"""Task-agnostic evaluation: batched greedy generation, per-task scoring, predictions files.

The method only ever sees batches of samples; nothing tells it which task they come from.
Test samples are split across processes and the predictions gathered back, in order.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from accelerate import Accelerator
from accelerate.utils import gather_object
from tqdm.auto import tqdm

from mcit.config import EvalConfig
from mcit.data.collate import Collator
from mcit.data.sample import Sample, Task
from mcit.evaluation.scorers import score_predictions
from mcit.files import write_text_atomic


class Answerer(Protocol):
    """What evaluation needs of a method (any `ContinualMethod` is one): its backbone, eval mode
    and batched generation. Evaluation depends on this, not on `mcit.methods`."""

    backbone: Any

    def eval(self) -> Any: ...

    def generate(self, batch: Any, max_new_tokens: int) -> list[str]: ...


@dataclass
class TaskEvaluation:
    task: str
    score: float  # 0-100
    n: int
    seconds: float
    records: list[dict]


def predict(
    method: Answerer,
    samples: list[Sample],
    collate: Collator,
    config: EvalConfig,
    desc: str = "eval",
    progress: bool = True,
) -> list[str]:
    """Predictions for `samples` in their order (this process's share only)."""
    method.eval()
    predictions: list[str] = []
    bar = tqdm(
        range(0, len(samples), config.batch_size),
        desc=desc,
        disable=not progress,
        mininterval=1,
        leave=False,
    )
    for start in bar:
        batch = collate(samples[start : start + config.batch_size], with_answer=False).to(
            method.backbone.device
        )
        predictions += method.generate(batch, max_new_tokens=config.max_new_tokens)
    return predictions


def check_answer_budget(task: Task, tokenizer, max_new_tokens: int) -> int:
    """Warn when a reference answer needs more new tokens than generation may produce: such a
    sample can never be scored right, whatever the method (a box is ~17 tokens here)."""
    longest = max(
        (
            len(tokenizer(r, add_special_tokens=False)["input_ids"]) + 1
            for s in task.test
            for r in s.references
        ),
        default=0,
    )
    if longest > max_new_tokens:
        warnings.warn(
            f"task {task.name}: its longest reference takes {longest} tokens (with EOS) but "
            f"eval.max_new_tokens is {max_new_tokens}; raise it or those answers are cut off",
            stacklevel=2,
        )
    return longest


def evaluate_task(
    method: Answerer,
    task: Task,
    collate: Collator,
    config: EvalConfig,
    accelerator: Accelerator,
    progress: bool = True,
) -> TaskEvaluation:
    started = time.time()
    rank, world = accelerator.process_index, accelerator.num_processes
    mine = list(range(rank, len(task.test), world))
    local = predict(
        method,
        [task.test[i] for i in mine],
        collate,
        config,
        desc=f"eval {task.name}",
        progress=progress and accelerator.is_main_process,
    )
    pairs = list(zip(mine, local, strict=True))
    if world > 1:
        pairs = gather_object(pairs)
    by_index = dict(pairs)
    predictions = [by_index[i] for i in range(len(task.test))]
    scores = score_predictions(task.metric, predictions, [s.references for s in task.test])
    records = [
        {"id": s.id, "prediction": p, "references": s.references, "score": sc}
        for s, p, sc in zip(task.test, predictions, scores, strict=True)
    ]
    score = 100.0 * sum(scores) / max(1, len(scores))
    return TaskEvaluation(task.name, score, len(scores), time.time() - started, records)


def write_jsonl_atomic(path: Path, records: list[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
