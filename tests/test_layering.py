"""The package's floors: models/ never imports data/ or evaluation/ at run time."""

import subprocess
import sys
from pathlib import Path

MODELS = sorted(
    f"mcit.models.{p.stem}"
    for p in (Path(__file__).parents[1] / "src" / "mcit" / "models").glob("*.py")
    if p.stem != "__init__"
)


def test_models_import_neither_data_nor_evaluation() -> None:
    # One fresh interpreter imports every module of models/; had any of them pulled in data/ or
    # evaluation/ (directly or through another package), it would be in sys.modules.
    code = (
        f"import sys, {', '.join(MODELS)}; "
        "print(sorted(m for m in sys.modules if m.startswith(('mcit.data', 'mcit.evaluation'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert len(MODELS) >= 6
    assert out.stdout.strip() == "[]", f"models/ pulls in {out.stdout.strip()}"


def test_config_errors_and_files_are_leaves() -> None:
    # Any module may read a config, raise mcit's errors or write a file atomically without
    # pulling in models, data or methods (or torch).
    for leaf, allowed in (
        ("mcit.errors", set()),
        ("mcit.files", set()),
        ("mcit.config", {"mcit.errors"}),
    ):
        code = (
            f"import sys, {leaf}; "
            "print(sorted(m for m in sys.modules if m.startswith('mcit.') or m == 'torch'))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert set(eval(out.stdout)) == {leaf} | allowed, f"{leaf} pulls in {out.stdout.strip()}"
