"""`mcit predict`: answer one question about one image, audio clip or video with a trained run,
without a task id,
and show what the method chose for that input (ModalPrompt: the tasks whose prompts it
selected, with their similarities).

The run is restored as a resume restores it: the saved config, the backbone, `begin_task`
replayed for the finished stages (from the task names in results.json, so the benchmark's data
need not be present), then the stage's saved method state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from mcit.config import RunConfig, load_config
from mcit.data.collate import Collator
from mcit.data.formats.llava import TAGS, remove_tag
from mcit.data.sample import Sample
from mcit.errors import ConfigError, DataError
from mcit.files import read_json
from mcit.methods.base import ContinualMethod, build_method, method_class
from mcit.methods.inspection import explain, explanation_lines
from mcit.train.checkpoint import stage_complete


@dataclass
class Prediction:
    run: str
    method: str
    stage: int
    stages: int
    question: str
    media: dict[str, str]
    answer: str
    explanation: dict[str, Any] = field(default_factory=dict)


def _read_results(run_dir: Path) -> dict:
    path = run_dir / "results.json"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: the run has no finished stage yet (no results.json)")
    return read_json(path, ConfigError)


def load_trained(
    run_dir: str | Path, stage: int | None = None, modality: str = "image"
) -> tuple[RunConfig, ContinualMethod, int, int]:
    """(config, method restored after `stage` (default: the last finished), stage, stages).
    The backbone loads the media the run's stream had (its manifest), and `modality`."""
    from mcit.models.backbone import load_backbone
    from mcit.runner import make_accelerator

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{run_dir}: not a run directory (no config.yaml)")
    config = load_config(run_dir / "config.yaml")
    results = _read_results(run_dir)
    finished = len(results.get("matrix", []))
    if finished == 0:
        raise ConfigError(f"{run_dir}: the run has no finished stage yet")
    stage = finished if stage is None else stage
    if not 1 <= stage <= finished:
        raise ConfigError(
            f"{run_dir}: --stage {stage}: the run's finished stages are 1..{finished}"
        )
    stage_dir = run_dir / f"stage_{stage}"
    if not stage_complete(stage_dir):
        raise ConfigError(f"{stage_dir}: missing or incomplete checkpoint")

    recorded = (results.get("manifest") or {}).get("modalities") or ["image"]
    backbone = load_backbone(config.model.backbone, tuple(dict.fromkeys([*recorded, modality])))
    method = build_method(config.method.name, backbone, config.method.args)
    method.to(make_accelerator(config).device)
    # A checkpoint from before stages were recorded in it: the names in results.json.
    names = [
        info.get("tasks") or [info.get("name", f"stage {s + 1}")]
        for s, info in enumerate(results["stages"][:stage])
    ]
    method.restore(
        stage_dir,
        stages=names,
        remedy=f"run the stages again (delete {run_dir}, then mcit run)",
    )
    method.eval()
    return config, method, stage, finished


def _check_media(modality: str, path: Path) -> None:
    """A missing or unreadable input file: an error naming it, before any model loads."""
    from mcit.data.media import audio_problem, video_problem

    if not path.exists():
        raise DataError(path, None, None, f"no such {modality} file")
    if modality == "image":
        try:
            with Image.open(path) as im:
                im.verify()
        except (UnidentifiedImageError, OSError) as err:
            raise DataError(path, None, None, f"not a readable image ({err})") from err
        return
    from mcit.models.audio import SAMPLE_RATE

    if modality == "audio":
        problem = audio_problem(path, SAMPLE_RATE, whose="the audio encoder's")
    else:
        problem = video_problem(path)
    if problem:
        raise DataError(path, None, None, problem)


def _without_media_tag(question: str, modality: str) -> str:
    """The question without its media tag, as the data loader reads a record: the collator
    puts the media slots in front of the question itself."""
    tag = TAGS[modality]
    count = question.count(tag)
    if count > 1:
        raise ConfigError(f"--question: {count} {tag} tags; the one {modality} needs at most one")
    return remove_tag(question, tag)


def predict_run(
    run_dir: str | Path,
    media: dict[str, str | Path],
    question: str,
    stage: int | None = None,
    max_new_tokens: int | None = None,
) -> Prediction:
    """The run's answer to `question` about one medium (`{"image": path}`, `{"audio": ...}` or
    `{"video": ...}`); no task id is given to the method."""
    if len(media) != 1:
        raise ConfigError("give exactly one of --image, --audio, --video")
    ((modality, path),) = media.items()
    if modality not in TAGS:
        raise ConfigError(f"unknown medium {modality!r} (known: {', '.join(TAGS)})")
    path = Path(path)
    _check_media(modality, path)
    question = _without_media_tag(question, modality)
    if not question.strip():
        raise ConfigError("--question: empty question")
    if max_new_tokens is not None and max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens: {max_new_tokens} must be at least 1")
    config, method, stage, finished = load_trained(run_dir, stage, modality)
    sample = Sample(
        id=f"predict:{path}",
        task="",  # unknown by design: the method must not need it
        turns=[(question, "")],
        references=[""],
        metric="exact",
        media={modality: str(path.resolve())},
    )
    batch = Collator(method.backbone)([sample], with_answer=False).to(method.backbone.device)
    budget = config.eval.max_new_tokens if max_new_tokens is None else max_new_tokens
    answer = method.generate(batch, max_new_tokens=budget)[0]
    explained = explain(method, batch)
    return Prediction(
        run=str(run_dir),
        method=config.method.name,
        stage=stage,
        stages=finished,
        question=question,
        media={modality: str(path)},
        answer=answer,
        explanation=explained[0] if explained else {},
    )


def format_prediction(p: Prediction) -> str:
    lines = [
        f"run: {p.run} ({p.method}, after stage {p.stage} of {p.stages} finished)",
        f"question: {p.question}",
        f"answer: {p.answer}",
    ]
    if not p.explanation:
        lines.append("(this method makes no per-input choice to show)")
    else:
        cls, _ = method_class(p.method)
        lines += explanation_lines(cls, p.explanation)
    return "\n".join(lines)
