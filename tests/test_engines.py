"""Distributed engines (configs/accelerate/, mcit.train.engines): every launch config parses the
way `accelerate launch` reads it; a DeepSpeed ZeRO-2 run (one process, CPU) trains bit for bit
as a plain one; what mcit cannot run is refused before any work, naming what to launch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DeepSpeedPlugin, DistributedType
from conftest import micro_overrides

from mcit.config import TrainConfig, load_config
from mcit.errors import ConfigError
from mcit.methods.base import method_class
from mcit.runner import run
from mcit.train.checkpoint import load_stage
from mcit.train.engines import (
    check_engine,
    check_method_under_engine,
    configure_deepspeed,
    engine_name,
)

ROOT = Path(__file__).parent.parent
LAUNCH_CONFIGS = sorted((ROOT / "configs" / "accelerate").glob("*.yaml"))


def _fake_accelerator(kind, processes=2, zero=None, ds_config=None):
    plugin = None if zero is None else SimpleNamespace(zero_stage=zero, deepspeed_config=ds_config)
    return SimpleNamespace(
        distributed_type=kind,
        num_processes=processes,
        state=SimpleNamespace(deepspeed_plugin=plugin),
    )


def test_launch_configs_are_ddp_and_zero2_and_parse_as_accelerate_reads_them():
    kinds = {p.stem: load_config_from_file(str(p)).distributed_type for p in LAUNCH_CONFIGS}
    assert kinds == {
        "ddp": DistributedType.MULTI_GPU,
        "deepspeed-zero2": DistributedType.DEEPSPEED,
    }
    for path in LAUNCH_CONFIGS:
        cluster = load_config_from_file(str(path))
        assert cluster.num_machines == 1 and cluster.use_cpu is False
        if cluster.distributed_type != DistributedType.DEEPSPEED:
            assert cluster.mixed_precision == "bf16"
            continue
        ds_file = ROOT / cluster.deepspeed_config["deepspeed_config_file"]
        plugin = DeepSpeedPlugin(hf_ds_config=str(ds_file), zero3_init_flag=False)
        # DeepSpeed's bf16 mode stays off: it would cast every weight the method owns in place.
        assert plugin.zero_stage == 2 and not json.loads(ds_file.read_text())["bf16"]["enabled"]
        # mcit fills the "auto" values from the run config; DeepSpeed's own parser accepts them
        # (for the one process it sees here).
        from deepspeed.runtime.config import DeepSpeedConfig

        train = TrainConfig(batch_size=14, grad_accum=8, max_grad_norm=1.0)
        configure_deepspeed(
            _fake_accelerator(DistributedType.DEEPSPEED, 1, 2, plugin.deepspeed_config), train
        )
        parsed = DeepSpeedConfig(dict(plugin.deepspeed_config))
        assert (parsed.train_batch_size, parsed.train_micro_batch_size_per_gpu) == (112, 14)
        assert (parsed.gradient_accumulation_steps, parsed.gradient_clipping) == (8, 1.0)
        assert parsed.zero_optimization_stage == 2


def test_fixed_deepspeed_values_must_agree_with_the_run_config():
    train = TrainConfig(batch_size=4, grad_accum=2, max_grad_norm=1.0)
    clash = {"train_micro_batch_size_per_gpu": 8, "gradient_accumulation_steps": "auto"}
    with pytest.raises(
        ConfigError, match=r"train_micro_batch_size_per_gpu = 8 .*train.batch_size = 4"
    ):
        configure_deepspeed(_fake_accelerator(DistributedType.DEEPSPEED, 2, 2, clash), train)
    total = {"train_batch_size": 32}
    with pytest.raises(ConfigError, match=r"train_batch_size = 32 but the run gives 16"):
        configure_deepspeed(_fake_accelerator(DistributedType.DEEPSPEED, 2, 2, total), train)
    for mode in ("bf16", "fp16"):
        with pytest.raises(ConfigError, match=f"{mode}.enabled = true, which casts the whole"):
            configure_deepspeed(
                _fake_accelerator(DistributedType.DEEPSPEED, 2, 2, {mode: {"enabled": True}}),
                train,
            )
    auto = {"bf16": {"enabled": "auto"}}
    configure_deepspeed(_fake_accelerator(DistributedType.DEEPSPEED, 2, 2, auto), train)
    assert auto["bf16"]["enabled"] is False
    agreeing = {"train_micro_batch_size_per_gpu": 4, "gradient_clipping": 1.0}
    configure_deepspeed(_fake_accelerator(DistributedType.DEEPSPEED, 2, 2, agreeing), train)
    assert agreeing["gradient_accumulation_steps"] == 2 and agreeing["train_batch_size"] == 16


def test_engines_that_shard_the_weights_and_methods_deepspeed_would_undo_are_refused():
    assert engine_name(_fake_accelerator(DistributedType.MULTI_CPU, 2)) == "ddp"
    assert engine_name(_fake_accelerator(DistributedType.NO, 1)) == "single"
    check_engine(_fake_accelerator(DistributedType.MULTI_GPU))
    check_engine(_fake_accelerator(DistributedType.DEEPSPEED, zero=2))
    with pytest.raises(ConfigError, match="FSDP shards the model's weights.*deepspeed-zero2.yaml"):
        check_engine(_fake_accelerator(DistributedType.FSDP))
    with pytest.raises(ConfigError, match="ZeRO stage 3 shards.*deepspeed-zero2.yaml"):
        check_engine(_fake_accelerator(DistributedType.DEEPSPEED, zero=3))
    deepspeed = _fake_accelerator(DistributedType.DEEPSPEED, zero=2)
    for name in ("finetune-lora", "moelora", "modalprompt", "l2p", "ewc", "lwf", "replay"):
        check_method_under_engine(deepspeed, method_class(name)[0])
    for name, hook in (("fwd-prompt", "before_optimizer_step"), ("moincl", "end_epoch")):
        with pytest.raises(ConfigError, match=f"'{name}' changes gradients.*{hook}.*ddp.yaml"):
            check_method_under_engine(deepspeed, method_class(name)[0])
        check_method_under_engine(
            _fake_accelerator(DistributedType.MULTI_GPU), method_class(name)[0]
        )


def _deepspeed_env(cache_dir, port: int) -> dict:
    """One process under DeepSpeed ZeRO-2 on the CPU with the shipped DeepSpeed file, as
    `accelerate launch --config_file configs/accelerate/deepspeed-zero2.yaml` sets it up."""
    return {
        **os.environ,
        "MCIT_CACHE": str(cache_dir),
        "OMP_NUM_THREADS": "1",
        "ACCELERATE_USE_DEEPSPEED": "true",
        "ACCELERATE_DEEPSPEED_CONFIG_FILE": str(ROOT / "configs/accelerate/deepspeed/zero2.json"),
        "ACCELERATE_DEEPSPEED_ZERO3_INIT": "false",
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }


def test_deepspeed_zero2_trains_bit_for_bit_as_a_plain_run(
    micro_backbone_dirs, micro_benchmark, cache_dir, tmp_path
):
    """Three stages, two micro-batches accumulated per step, clipping on, the projector in a
    parameter group of its own: the DeepSpeed engine (built afresh each stage) steps,
    accumulates and clips exactly as mcit's own loop does."""
    extra = {
        "method.args": "{r: 4, alpha: 8, dropout: 0.0, train_projector: true}",
        "train.grad_accum": 2,
        "train.projector_lr": 1e-4,
    }
    plain = run(
        load_config(None, micro_overrides(micro_benchmark, tmp_path / "plain", **extra)),
        progress=False,
    )
    overrides = micro_overrides(micro_benchmark, tmp_path / "zero2", **extra)
    proc = subprocess.run(
        [sys.executable, "-m", "mcit", "run", "--quiet", *overrides],
        env=_deepspeed_env(cache_dir, 29613),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_name = plain.run
    zero2 = json.loads((tmp_path / "zero2" / run_name / "results.json").read_text())
    assert zero2["manifest"]["engine"] == "deepspeed" and zero2["manifest"]["zero_stage"] == 2
    assert plain.manifest["engine"] == "single"
    assert zero2["matrix"] == plain.matrix
    for s in (1, 2, 3):
        ours, _ = load_stage(tmp_path / "plain" / run_name / f"stage_{s}")
        theirs, _ = load_stage(tmp_path / "zero2" / run_name / f"stage_{s}")
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), s
        assert any(k.endswith("lora_B.default.weight") and ours[k].abs().sum() > 0 for k in ours)
        assert any("multi_modal_projector" in k for k in ours)
        assert {v.dtype for v in theirs.values()} == {torch.float32}

    refused = subprocess.run(
        [sys.executable, "-m", "mcit", "run", "--quiet",
         *micro_overrides(micro_benchmark, tmp_path / "refused", "fwd-prompt")],
        env=_deepspeed_env(cache_dir, 29614),
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "'fwd-prompt' changes gradients" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (tmp_path / "refused").exists() or not any(
        (tmp_path / "refused").rglob("*.safetensors")
    )
