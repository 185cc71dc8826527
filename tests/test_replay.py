"""Experience replay: a fixed-size buffer shared equally by the tasks seen, mixed into training
batches at the configured ratio, saved for resume, and reported as not rehearsal-free."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from conftest import micro_overrides
from micro_method import micro_method

from mcit.config import load_config
from mcit.errors import ConfigError
from mcit.methods.base import method_class
from mcit.methods.replay import balanced_quotas
from mcit.runner import run
from mcit.train.checkpoint import load_stage

ARGS = {"r": 4, "alpha": 8, "dropout": 0.0, "buffer_size": 10, "replay_ratio": 0.25}


@pytest.fixture
def setup(micro_backbone_dirs, micro_benchmark, tmp_path):
    return micro_method(micro_benchmark, tmp_path, "replay", ARGS)


def test_balanced_quotas():
    assert balanced_quotas(10, 1) == [10]
    assert balanced_quotas(10, 2) == [5, 5]
    assert balanced_quotas(10, 3) == [4, 3, 3]
    assert balanced_quotas(2, 3) == [1, 1, 0]


def test_buffer_has_a_fixed_size_shared_equally_by_the_tasks_seen(setup):
    method, tasks = setup.method, setup.tasks
    sizes = []
    for stage in range(3):
        torch.manual_seed(stage)
        kept_before = [list(share) for share in method.buffer]
        method.end_task(stage, tasks[stage], tasks[stage].train)
        sizes.append([len(share) for share in method.buffer])
        for share, task in zip(method.buffer, tasks, strict=False):
            assert {s.task for s in share} == {task.name}  # each share holds its own task
            assert len({s.id for s in share}) == len(share)  # without repeats
            assert all(s in task.train for s in share)
        # Re-balancing cuts the older shares; it never swaps their samples for others.
        for before, after in zip(kept_before, method.buffer, strict=False):
            assert after == before[: len(after)]
    assert sizes == [[10], [5, 5], [4, 3, 3]]


def test_a_task_smaller_than_its_share_is_kept_whole(setup):
    setup.method.args.buffer_size = 40
    setup.method.end_task(0, setup.tasks[0], setup.tasks[0].train)
    assert [len(share) for share in setup.method.buffer] == [16]  # 16 training samples


def test_batches_are_mixed_at_the_configured_ratio(setup):
    method, tasks = setup.method, setup.tasks
    method.begin_task(0, tasks[0])
    drawn = tasks[0].train[:8]
    assert method.batch_samples(drawn) == drawn  # nothing stored yet: the batch as drawn
    for stage in range(2):
        method.end_task(stage, tasks[stage], tasks[stage].train)
    method.begin_task(2, tasks[2])
    current = tasks[2].train[:8]
    counts: Counter[str] = Counter()
    for _ in range(400):
        mixed = method.batch_samples(current)
        assert len(mixed) == 8
        assert mixed[:6] == current[:6]  # round(0.25 × 8) = 2 slots go to the buffer
        replayed = mixed[6:]
        stored_ids = {s.id for share in method.buffer for s in share}
        assert all(s.id in stored_ids for s in replayed)
        assert replayed[0].id != replayed[1].id  # no repeat within a batch
        counts.update(s.task for s in replayed)
    # The buffer holds 5 + 5 samples of the two earlier tasks: draws are balanced over them.
    assert sum(counts.values()) == 800
    assert abs(counts[tasks[0].name] - 400) < 60 and abs(counts[tasks[1].name] - 400) < 60


def test_the_trainer_mixes_replayed_samples_into_its_batches(setup):
    method, tasks = setup.method, setup.tasks
    method.end_task(0, tasks[0], tasks[0].train)
    seen: list[list[str]] = []
    real = setup.collate

    def recording(samples):
        seen.append([s.task for s in samples])
        return real(samples)

    setup.collate = recording
    method.begin_task(1, tasks[1])
    setup.train(1, steps=3)
    # batch 4, ratio 0.25: one replayed scienceqa sample and three gqa samples per batch
    assert seen == [["gqa", "gqa", "gqa", "scienceqa"]] * 3


def test_buffer_survives_a_json_round_trip(setup):
    method, tasks = setup.method, setup.tasks
    for stage in range(2):
        method.end_task(stage, tasks[stage], tasks[stage].train)
    state = json.loads(json.dumps(method.extra_state()))
    fresh = micro_method(
        setup.config.data.benchmark, setup.config.output_dir, "replay", ARGS
    ).method
    fresh.load_extra_state(state)
    assert fresh.buffer == method.buffer and fresh.tasks_seen == ["scienceqa", "gqa"]


def test_run_records_replay_as_not_rehearsal_free(micro_backbone_dirs, micro_benchmark, tmp_path):
    config = load_config(
        None, micro_overrides(micro_benchmark, tmp_path, "replay", **{"method.args": ARGS})
    )
    run(config, progress=False, stop_after_stage=2)
    run_dir = tmp_path / config.run_name
    results = json.loads((run_dir / "results.json").read_text())
    assert results["rehearsal_free"] is False
    _, extra = load_stage(run_dir / "stage_2")
    assert [len(share) for share in extra["replay_buffer"]] == [5, 5]


def test_ratio_must_leave_room_for_the_current_task():
    with pytest.raises(ConfigError, match=r"method.args.replay_ratio: 1.0 must be less than 1"):
        method_class("replay", {"replay_ratio": 1.0})
