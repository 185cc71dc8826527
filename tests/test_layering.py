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
        ("mcit.config", {"mcit.errors", "mcit.files"}),  # files: its one-line YAML errors
    ):
        code = (
            f"import sys, {leaf}; "
            "print(sorted(m for m in sys.modules if m.startswith('mcit.') or m == 'torch'))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert set(eval(out.stdout)) == {leaf} | allowed, f"{leaf} pulls in {out.stdout.strip()}"


def test_evaluation_imports_no_method() -> None:
    # Evaluation needs only the `Answerer` protocol: the methods sit above it.
    modules = sorted(
        f"mcit.evaluation.{p.stem}"
        for p in (Path(__file__).parents[1] / "src" / "mcit" / "evaluation").glob("*.py")
        if p.stem != "__init__"
    )
    code = (
        f"import sys, {', '.join(modules)}; "
        "print(sorted(m for m in sys.modules if m.startswith('mcit.methods')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"evaluation/ pulls in {out.stdout.strip()}"


def test_every_module_imports_alone() -> None:
    # An import circle shows when the module on it is imported first: import each module in a
    # state with no mcit module loaded (third-party libraries stay, for speed).
    root = Path(__file__).parents[1] / "src"
    modules = sorted(
        ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        for p in (root / "mcit").rglob("*.py")
        if p.stem != "__main__"
    )
    code = f"""
import importlib, sys, traceback
failed = []
for name in {modules!r}:
    for loaded in [m for m in sys.modules if m == "mcit" or m.startswith("mcit.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception:
        failed.append(name + ": " + traceback.format_exc().splitlines()[-1])
print(failed)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert len(modules) > 60
    assert out.stdout.strip() == "[]", out.stdout


def _code_strings(path: Path) -> list[tuple[int, str]]:
    """The string constants of a module that are not docstrings, with their lines."""
    import ast

    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        and id(node) not in docstrings
    ]  # fmt: skip


def test_no_method_name_outside_methods() -> None:
    # What a method costs, whether it trains, which paper measures it against which baseline:
    # metadata the method declares or data beside the bench (mcit/bench/paper-figures.json),
    # never a method's name written into the bench, the reports, the trainer, the evaluation
    # or the runner. A new method then shows in all of them by registering.
    from mcit.methods.base import method_names

    names = set(method_names())
    src = Path(__file__).parents[1] / "src" / "mcit"
    files = [src / "runner.py"] + [
        p
        for folder in ("bench", "report", "train", "evaluation")
        for p in (src / folder).glob("*.py")
    ]
    # The CSV matrix format's row of b_i scores is labelled "zero-shot" (docs/metrics-and-
    # reports.md): a keyword users write in their files, which only shares the method's name.
    allowed = {("matrix_files.py", "zero-shot")}
    found = [
        f"{path.relative_to(src)}:{line}: {text!r}"
        for path in files
        for line, text in _code_strings(path)
        if text in names and (path.name, text) not in allowed
    ]
    assert len(files) > 20
    assert not found, "method names outside methods/: " + "; ".join(found)
