"""The bench file's schema (docs/bench.md): its version tag and a check that names the first
field a file gets wrong, so a report never fails deep inside with a KeyError."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mcit.errors import ConfigError
from mcit.files import read_json

SCHEMA = "mcit-bench/2"
# Version 1 keyed the paper's baseline by that method's own name ("references": {"base": ...,
# "<name>": ...}); version 2 by its role, "baseline". A version 1 file is read with the key
# renamed.
READABLE = ("mcit-bench/1", SCHEMA)

SUMMARY_KEYS = ("median", "q1", "q3", "iqr", "min", "max", "n", "values")


class BenchError(ConfigError):
    """A bench file that does not follow the schema; the message names the file and field."""


def _need(node: Any, key: str, kind: type | tuple[type, ...], where: str, source: str) -> Any:
    if not isinstance(node, dict) or key not in node:
        raise BenchError(f"{source}: field '{where}{key}' is missing")
    value = node[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise BenchError(f"{source}: field '{where}{key}' is not a {names}")
    return value


def _summary(node: Any, where: str, source: str) -> None:
    if not isinstance(node, dict):
        raise BenchError(f"{source}: field '{where}' is not a summary (a mapping)")
    for key in SUMMARY_KEYS:
        _need(node, key, (list,) if key == "values" else (int, float), f"{where}.", source)


def _ratios(node: Any, where: str, source: str) -> None:
    if not isinstance(node, dict):
        raise BenchError(f"{source}: field '{where}' is not a mapping")
    for ref, ratio in node.items():
        for kind in ("time", "speed"):
            _summary(
                _need(ratio, kind, dict, f"{where}.{ref}.", source), f"{where}.{ref}.{kind}", source
            )


def validate_bench(bench: Any, source: str = "bench") -> dict[str, Any]:
    """Return `bench` if it follows the schema (a version 1 file brought to version 2's field
    names, in place), else raise BenchError naming the field."""
    if not isinstance(bench, dict):
        raise BenchError(f"{source}: a bench file holds one JSON object")
    schema = _need(bench, "schema", str, "", source)
    if schema not in READABLE:
        raise BenchError(
            f"{source}: field 'schema' is '{schema}'; this mcit reads {', '.join(READABLE)}"
        )
    settings = _need(bench, "settings", dict, "", source)
    for key in ("stage", "rounds", "train_batch", "new_tokens"):
        _need(settings, key, int, "settings.", source)
    _need(settings, "infer_batches", list, "settings.", source)
    references = _need(settings, "references", dict, "settings.", source)
    if schema == "mcit-bench/1":
        named = [key for key in references if key != "base"]
        if len(named) == 1:
            references["baseline"] = references.pop(named[0])
    for key in ("base", "baseline"):
        _need(references, key, (str, type(None)), "settings.references.", source)
    methods = _need(bench, "methods", dict, "", source)
    for label, entry in methods.items():
        where = f"methods.{label}."
        params = _need(entry, "parameters", dict, where, source)
        for key in ("trainable", "total", "added"):
            _need(params, key, int, f"{where}parameters.", source)
        _need(params, "trainable_pct", (int, float), f"{where}parameters.", source)
        train = entry.get("train") if isinstance(entry, dict) else None
        if train is not None:
            _summary(
                _need(train, "step_seconds", dict, f"{where}train.", source),
                f"{where}train.step_seconds",
                source,
            )
            _summary(
                _need(train, "samples_per_second", dict, f"{where}train.", source),
                f"{where}train.samples_per_second",
                source,
            )
            _ratios(_need(train, "vs", dict, f"{where}train.", source), f"{where}train.vs", source)
        for i, inf in enumerate(_need(entry, "inference", list, where, source)):
            at = f"{where}inference[{i}]."
            _need(inf, "batch", int, at, source)
            for key in ("seconds_per_call", "latency_per_sample_s", "tokens_per_second"):
                _summary(_need(inf, key, dict, at, source), f"{at}{key}", source)
            _ratios(_need(inf, "vs", dict, at, source), f"{at}vs", source)
    scaling = bench.get("scaling")
    if scaling is not None:
        _need(scaling, "tasks", list, "scaling.", source)
        for label, entries in _need(scaling, "methods", dict, "scaling.", source).items():
            if not isinstance(entries, list):
                raise BenchError(f"{source}: field 'scaling.methods.{label}' is not a list")
            for i, e in enumerate(entries):
                at = f"scaling.methods.{label}[{i}]."
                _need(e, "tasks", int, at, source)
                _summary(_need(e, "latency_s", dict, at, source), f"{at}latency_s", source)
    return bench


def read_bench(path: str | Path) -> dict[str, Any]:
    """A bench JSON file, checked against the schema."""
    path = Path(path)
    return validate_bench(read_json(path, BenchError), str(path))
