"""Run under torchrun by test_ddp.py: for each method named, one DDP training stage from ranks
that start from different RNG states, then each rank saves the method's state before and after."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from conftest import micro_overrides  # noqa: E402

from mcit.config import load_config  # noqa: E402
from mcit.data.collate import Collator  # noqa: E402
from mcit.methods.base import build_method  # noqa: E402
from mcit.models.backbone import load_backbone  # noqa: E402
from mcit.runner import load_stream, make_accelerator  # noqa: E402
from mcit.train.trainer import RunLogger, Trainer  # noqa: E402

bench, out, methods = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
for method_name in methods:
    config = load_config(
        None, micro_overrides(bench, out, method_name, **{"train.max_steps_per_task": 4})
    )
    accelerator = make_accelerator(config)
    torch.manual_seed(100 + accelerator.process_index)  # ranks start from different RNG states
    tasks = load_stream(config)
    backbone = load_backbone(config.model.backbone)
    method = build_method(method_name, backbone)
    method.begin_task(0, tasks[0])  # per-task modules (prompts) exist before the snapshot
    before = method.method_state()
    trainer = Trainer(accelerator, config.train, RunLogger(out, enabled=False), progress=False)
    trainer.train_stage(method, 0, tasks[0].train, Collator(backbone), seed=0)
    torch.save(
        {"before": before, "after": method.method_state(), "world": accelerator.num_processes},
        out / f"{method_name}.rank{accelerator.process_index}.pt",
    )
