"""Run under torchrun by test_ddp.py: one DDP training stage, then each rank saves its state."""

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

bench, out = Path(sys.argv[1]), Path(sys.argv[2])
method_name = sys.argv[3] if len(sys.argv) > 3 else "finetune"
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
stats = trainer.train_stage(method, 0, tasks[0].train, Collator(backbone), seed=0)
after = method.method_state()
torch.save(
    {"before": before, "after": after, "world": accelerator.num_processes},
    out / f"rank{accelerator.process_index}.pt",
)
