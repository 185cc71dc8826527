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
