"""Run under torchrun by test_ddp.py: for each method named, DDP training stages from ranks
that start from different RNG states, then each rank saves the method's state before and after
the last stage. MCIT_DDP_STAGES (default 1) stages of the stream, in the order MCIT_DDP_ORDER
(a YAML list; default: the benchmark's)."""

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from conftest import micro_overrides  # noqa: E402

from mcit.config import load_config  # noqa: E402
from mcit.data.collate import Collator  # noqa: E402
from mcit.data.sample import stream_modalities  # noqa: E402
from mcit.methods.base import build_method  # noqa: E402
from mcit.models.backbone import load_backbone  # noqa: E402
from mcit.runner import load_stream, make_accelerator  # noqa: E402
from mcit.train.trainer import RunLogger, Trainer  # noqa: E402

bench, out, methods = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
stages = int(os.environ.get("MCIT_DDP_STAGES", "1"))
order = os.environ.get("MCIT_DDP_ORDER")
for method_name in methods:
    extra = {"train.max_steps_per_task": 4, **({"data.order": order} if order else {})}
    config = load_config(None, micro_overrides(bench, out, method_name, **extra))
    accelerator = make_accelerator(config)
    torch.manual_seed(100 + accelerator.process_index)  # ranks start from different RNG states
    tasks = load_stream(config)
    backbone = load_backbone(config.model.backbone, stream_modalities(tasks))
    method = build_method(method_name, backbone)
    trainer = Trainer(accelerator, config.train, RunLogger(out, enabled=False), progress=False)
    for t in range(stages):
        method.begin_task(t, tasks[t])  # per-task modules (prompts) exist before the snapshot
        before = method.method_state()
        trainer.train_stage(method, t, tasks[t].train, Collator(backbone), seed=t)
        if t < stages - 1:
            method.end_task(t, tasks[t], tasks[t].train)
    torch.save(
        {"before": before, "after": method.method_state(), "world": accelerator.num_processes},
        out / f"{method_name}.rank{accelerator.process_index}.pt",
    )
