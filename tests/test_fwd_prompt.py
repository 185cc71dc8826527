"""Fwd-Prompt's own equations: the energy criterion on known singular values, an orthonormal basis
as tasks are added, the gradient projections by hand (each switch changes only its own part),
the pre-trained subspace from the token embeddings, the bases restored exactly, the selection
by image and text keys, and the analyses. The contract rules (restore, no task id, batch
independence, DDP) run for it in tests/test_method_contract.py and tests/test_ddp.py."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import micro_overrides
from micro_method import micro_method
from safetensors.torch import load_file
from torch.nn import functional as F

from mcit.cli import main
from mcit.config import load_config
from mcit.errors import ConfigError
from mcit.evaluation.run_results import RunResults
from mcit.methods.base import build_method, method_class
from mcit.methods.fwd_prompt import (
    FwdPrompt,
    energy_rank,
    extend_basis,
    project_off,
    subspace_overlap,
)
from mcit.models.backbone import load_backbone
from mcit.models.prompting import real_token_ids
from mcit.report.report import write_report

D = 48  # the micro LM's width


def _orthonormal(d: int, k: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=torch.float64))
    return q[:, :k].to(dtype)


def _rows_with_spectrum(sigma: list[float], n: int = 40, d: int = 12, seed: int = 0):
    """Rows [n, d] (float64) whose singular values are `sigma`, and their right singular
    vectors."""
    u = _orthonormal(n, len(sigma), seed, torch.float64)
    v = _orthonormal(d, len(sigma), seed + 1, torch.float64)
    return u @ torch.diag(torch.tensor(sigma, dtype=torch.float64)) @ v.T, v


# ---------------------------------------------------------------------------- subspaces
def test_the_energy_threshold_keeps_the_right_rank_on_known_singular_values():
    # σ² = 50, 30, 15, 4, 1 of a total 100: 97 % needs four directions, 94 % three, 49 % one;
    # exactly 95 % is reached by three (float64 rows, no rounding past the threshold).
    rows, v = _rows_with_spectrum([50**0.5, 30**0.5, 15**0.5, 2.0, 1.0])
    exact, _ = extend_basis(torch.zeros(12, 0, dtype=torch.float64), rows, 0.95)
    assert exact.shape == (12, 3)
    for energy, rank in ((0.97, 4), (0.94, 3), (0.49, 1), (0.999, 5)):
        basis, info = extend_basis(torch.zeros(12, 0), rows.float(), energy)
        assert basis.shape == (12, rank) and info["rank_added"] == rank, energy
        # The kept directions are the leading right singular vectors (up to sign).
        assert torch.allclose((basis.T @ v[:, :rank].float()).abs(), torch.eye(rank), atol=1e-5)
    assert info["spectrum"][:5] == pytest.approx([0.5, 0.3, 0.15, 0.04, 0.01], abs=1e-6)
    # GPM's criterion counts the energy the basis already holds: 80 of 100 are inside the first
    # two directions, so reaching 97 % needs σ² 15 and 4 more, not four new directions.
    old = extend_basis(torch.zeros(12, 0, dtype=torch.float64), rows, 0.8)[0]
    assert old.shape[1] == 2
    extended, info = extend_basis(old, rows, 0.97)
    assert info["energy_inside_before"] == pytest.approx(0.8)
    assert info["rank_added"] == 2 and extended.shape[1] == 4
    assert energy_rank(torch.tensor([5.0, 3.0]), 0.9, captured=95.0, total=100.0) == 0


def test_the_basis_stays_orthonormal_as_tasks_are_added():
    generator = torch.Generator().manual_seed(3)
    basis = torch.zeros(16, 0)
    ranks = []
    for task in range(6):  # each task spans a few shared and a few new directions
        mix = torch.randn(30, 16, generator=generator) * torch.linspace(1, 0.01, 16).roll(task)
        basis, _ = extend_basis(basis, mix, 0.9)
        ranks.append(basis.shape[1])
        gram = basis.T.double() @ basis.double()
        assert torch.allclose(gram, torch.eye(basis.shape[1], dtype=torch.float64), atol=1e-6)
    assert ranks == sorted(ranks) and ranks[-1] <= 16 and ranks[-1] > ranks[0]
    assert subspace_overlap(basis, basis) == pytest.approx(1.0)
    assert subspace_overlap(_orthonormal(8, 2, 0), _orthonormal(8, 8, 0)[:, 2:4]) == pytest.approx(
        0.0, abs=1e-12
    )


# ---------------------------------------------------------------------------- the method
@pytest.fixture(scope="module")
def setup(micro_backbone_dirs, micro_benchmark, tmp_path_factory):
    return micro_method(micro_benchmark, tmp_path_factory.mktemp("fwd"), "fwd-prompt", "{}")


def _variant(setup, **args) -> FwdPrompt:
    config = setup.config
    method = build_method(
        "fwd-prompt", load_backbone(config.model.backbone), {**config.method.args, **args}
    )
    assert isinstance(method, FwdPrompt)
    return method


def test_the_pretrained_subspace_spans_the_token_embeddings_to_its_energy(setup):
    method = setup.method
    table = method.backbone.input_embeddings.weight.detach().float()
    rows = table[real_token_ids(method.backbone, "fwd-prompt")]
    u = method.pretrained_subspace
    inside = float(((rows @ u) ** 2).sum() / (rows**2).sum())
    assert 0.97 <= inside < 1.0 and 0 < u.shape[1] < D
    smaller = _variant(setup, pretrained_energy=0.5).pretrained_subspace
    assert smaller.shape[1] < u.shape[1]


def _with_bases(method: FwdPrompt, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    old, pre = _orthonormal(D, 7, seed), _orthonormal(D, 30, seed + 1)
    method._set_basis("old", old)
    method._set_basis("pretrained", pre)
    return old, pre


def _projected(method: FwdPrompt, grad: torch.Tensor) -> torch.Tensor:
    method.prompts.grad = grad.clone()
    method.before_optimizer_step()
    return method.prompts.grad.reshape(-1, D)


def test_after_projection_no_gradient_is_left_in_the_old_tasks_subspace(setup):
    method = _variant(setup)
    old, _ = _with_bases(method)
    grad = torch.randn_like(method.prompts)
    g = _projected(method, grad)
    assert (g @ old).abs().max() < 1e-5 * grad.abs().max()
    assert not torch.allclose(g, grad.reshape(-1, D))


def test_with_no_old_task_and_beta_one_the_gradient_is_unchanged(setup):
    method = _variant(setup, beta=1.0)
    assert method.old_tasks_basis.shape[1] == 0  # no task learned yet
    grad = torch.randn_like(method.prompts)
    assert torch.equal(_projected(method, grad), grad.reshape(-1, D))


def test_the_update_itself_stays_out_of_the_old_subspace_under_adamw(micro_benchmark, tmp_path):
    """AdamW rescales each coordinate and weight decay pulls along every direction: the
    trainer's steps still move the prompts only outside U_old (after_optimizer_step)."""
    for residual in (True, False):
        setup = micro_method(
            micro_benchmark, tmp_path / str(residual), "fwd-prompt",
            f"{{residual_projection: {str(residual).lower()}}}",
        )  # fmt: skip
        setup.config.train.weight_decay = 0.1
        old, _ = _with_bases(setup.method)
        setup.method.begin_task(0, setup.tasks[0])
        before = setup.method.prompts.detach().clone()
        setup.train(0, steps=3)
        delta = (setup.method.prompts.detach() - before).reshape(-1, D)
        inside = (delta @ old).abs().max() / delta.abs().max()
        assert delta.abs().max() > 0
        assert (inside < 1e-5) == residual, (residual, float(inside))


def test_each_projection_switch_changes_only_its_own_part(setup):
    grad = torch.randn(10, 5, D, generator=torch.Generator().manual_seed(1))
    g = grad.reshape(-1, D)
    beta = 0.25
    results = {}
    for residual in (True, False):
        for pretrained in (True, False):
            method = _variant(
                setup, beta=beta, residual_projection=residual, pretrained_projection=pretrained
            )
            old, pre = _with_bases(method)
            results[residual, pretrained] = _projected(method, grad)
    inside = g @ pre @ pre.T
    damped = inside + beta * (g - inside)  # the part outside U_pre scaled by β
    torch.testing.assert_close(results[False, True], damped)
    torch.testing.assert_close(results[True, False], project_off(g, old))
    torch.testing.assert_close(results[True, True], project_off(damped, old))
    assert torch.equal(results[False, False], g)  # the plain pool: the gradient as it came


def test_end_task_adds_the_tasks_inputs_and_the_bases_restore_exactly(
    micro_benchmark, tmp_path, capsys
):
    overrides = micro_overrides(micro_benchmark, tmp_path, "fwd-prompt", **{"train.lr": 0.01})
    run_config = load_config(None, overrides)
    assert main(["run", "--quiet", *overrides]) == 0
    assert "(fwd-prompt: a reconstruction from the paper's description" in capsys.readouterr().out
    results = RunResults.from_dict(
        json.loads((tmp_path / run_config.run_name / "results.json").read_text())
    )
    run_dir = tmp_path / run_config.run_name
    saved = json.loads((run_dir / "stage_3" / "method.json").read_text())["extra"]["subspaces"]
    assert [s["task"] for s in saved] == results.tasks
    assert saved[0]["energy_inside_before"] == 0.0 and saved[0]["rank_added"] > 0
    assert [s["rank_total"] for s in saved] == sorted(s["rank_total"] for s in saved)
    assert saved[-1]["rank_total"] == sum(s["rank_added"] for s in saved)
    restored = build_method(
        "fwd-prompt", load_backbone(run_config.model.backbone), run_config.method.args
    )
    restored.restore(run_dir / "stage_3")
    tensors = load_file(str(run_dir / "stage_3" / "method.safetensors"))
    for name in ("old_basis", "old_rank", "pretrained_basis", "pretrained_rank"):
        assert torch.equal(getattr(restored, name), tensors[name]), name
    u = restored.old_tasks_basis
    assert u.shape[1] == saved[-1]["rank_total"]
    torch.testing.assert_close(u.T @ u, torch.eye(u.shape[1]), atol=1e-5, rtol=0)
    assert restored.subspaces == saved
    analysis = run_dir / "analysis" / "stage_3"
    overlap = json.loads((analysis / "subspace_overlap.json").read_text())
    assert overlap["cols"] == [*results.tasks, "pre-trained"]
    for i in range(3):  # a task's subspace overlaps itself fully
        assert overlap["values"][i][i] == pytest.approx(1.0, abs=1e-6)
    kept = json.loads((analysis / "kept_subspace.json").read_text())
    assert [row[0] for row in kept["values"]] == [float(s["rank_added"]) for s in saved]
    # The report marks the method as a reconstruction and says so under the table.
    report = write_report([run_dir], tmp_path / "report").path.read_text()
    assert "fwd-prompt ‡" in report and "‡ fwd-prompt: a reconstruction" in report
    for name in ("subspace_overlap", "energy_spectrum", "kept_subspace"):  # drawn as heatmaps
        png = tmp_path / "report" / "plots" / f"analysis_fwd-prompt_{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_selection_scores_average_the_image_and_text_keys(setup):
    method = setup.method
    samples = setup.tasks[1].train[:4]  # gqa: every sample has an image
    feats = method.guidance.features(samples, method.backbone.device)
    image = F.normalize(feats.image, dim=-1) @ F.normalize(method.image_keys, dim=-1).T
    text = F.normalize(feats.text, dim=-1) @ F.normalize(method.text_keys, dim=-1).T
    scores = method.scores(samples)
    torch.testing.assert_close(scores, (image + text) / 2)
    assert torch.equal(method.select(scores), scores.topk(3, dim=1).indices)
    # The key loss pulls the selected keys only: the others get an exact zero gradient.
    selected = method.select(scores)
    (1 - scores.gather(1, selected).mean()).backward()
    untouched = sorted(set(range(10)) - set(selected.flatten().tolist()))
    assert method.image_keys.grad[untouched].abs().sum() == 0
    assert method.text_keys.grad[selected.flatten()].abs().sum() > 0
    method.zero_grad()


def test_bad_arguments_name_their_key():
    with pytest.raises(ConfigError, match=r"method.args.beta: 1.5 must be at most 1"):
        method_class("fwd-prompt", {"beta": 1.5})
    with pytest.raises(ConfigError, match=r"method.args.energy: 0.0 must be greater than 0"):
        method_class("fwd-prompt", {"energy": 0})
    with pytest.raises(ConfigError, match=r"method.args.top_n: 4 must not exceed pool_size"):
        method_class("fwd-prompt", {"pool_size": 3, "top_n": 4})
