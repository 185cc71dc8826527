"""MoInCL (Pian et al., TMLR 2025, "Modality-Inconsistent Continual Learning of Multimodal Large
Language Models"): sequential LoRA whose stream changes modality and task type, kept from
forgetting by pseudo targets from the previous model and by instruction-based distillation.

- **PTGM**, pseudo-target generation [paper, Sec. 4.2; code]. From the second task on, when the
  current task is QA and a captioning task was learned before (in any modality), the previous
  model writes a caption for current inputs, asked with the captioning instruction of their
  modality; when the current task is captioning and a QA task was learned before, it answers a
  question about them. The authors pre-generated those questions with a text LLM from the
  captions; mcit asks the previous model one of its own short questions per modality
  (`PSEUDO_QUESTIONS`, chosen by the sample's id), and documents that as its choice. Each
  training batch carries `pseudo_num` pseudo samples: the inputs of the batch's first samples,
  with the pseudo instruction and the previous model's answer. They are generated the first
  time an input is drawn and kept for the stage: the previous model is frozen, so this is the
  paper's "once, before the task", for the inputs training actually reaches.
- **Distillation on pseudo samples** [code]: `λ_kl · τ² · KL(softmax(z_old/τ) ‖
  softmax(z_new/τ))`, τ = 5, over the pseudo samples' answer positions; the LM loss covers the
  real and the pseudo samples.
- **IKD**, instruction-based knowledge distillation [paper, Eq. 6; code]: every step, a few
  text-only instructions (`ikd_instructions`, 4) pass through the previous and the current
  model; the loss adds `τ² · KL(old ‖ new)` over their response positions, weight `ikd_weight`
  (1). It keeps the shared LM's instruction following, so earlier modalities keep working. mcit
  ships its own instruction set (`IKD_INSTRUCTIONS`), drawn in a fixed rotation by step.
- **Weight fusion** [code; not in the paper]: after every pass over the data,
  `θ ← (1 − α) θ_old + α θ_new` for the LoRA weights. Off by default (`fusion`).

The model [code]: LoRA r 8, α 32, dropout 0.1 on the LM's q and v projections; the previous
model is the LoRA as the stage began, swapped in for its passes (as LwF's is: one adapter's
memory). Captioning is told from QA by the task's metric (CIDEr: captioning), which the method
sees while it trains a task, never at inference.

Specification: docs/methods/moincl.md.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import torch

from mcit.config import AT_LEAST_1, NON_NEGATIVE, POSITIVE, Bounds, setting
from mcit.data.collate import IGNORE, Batch, Collator
from mcit.data.sample import Sample, Task
from mcit.errors import ConfigError
from mcit.methods.base import LossOutput, register_method
from mcit.methods.finetune_lora import LoraArgs
from mcit.methods.lwf import Lwf, distillation_loss

CAPTION_METRICS = ("cider",)  # a task scored by CIDEr is captioning; every other one is QA
NOUNS = {"image": "image", "video": "video", "audio": "audio"}
# [code] the captioning instruction of the pseudo captions: "describe the {modality}".
CAPTION_INSTRUCTION = "Describe the {noun}."
# mcit's pseudo questions (the authors generated theirs with a text LLM; see the module doc).
PSEUDO_QUESTIONS = {
    "image": [
        "What is in the image?",
        "What colour is the main shape?",
        "How many shapes are there?",
    ],
    "video": [
        "What happens in the video?",
        "What moves in the video?",
        "What colour is the shape?",
    ],
    "audio": ["What do you hear?", "What kind of sound is it?", "Is the sound high or low?"],
}
# mcit's text-only instruction set for IKD: (instruction, response) pairs with no media.
IKD_INSTRUCTIONS: list[tuple[str, str]] = [
    ("Name a colour.", "Red."),
    ("Count from one to four.", "One, two, three, four."),
    ("What is two plus three?", "Five."),
    ("Give the opposite of high.", "Low."),
    ("Name a shape with three sides.", "A triangle."),
    ("Answer yes or no: is the sky usually blue?", "Yes."),
    ("Write the word cat in capital letters.", "CAT."),
    ("Which is bigger, ten or four?", "Ten."),
    ("Finish the sentence: the sun rises in the", "East."),
    ("Name something that makes a loud sound.", "A drum."),
    ("What comes after Monday?", "Tuesday."),
    ("Say hello in one word.", "Hello."),
    ("Name a shape with four equal sides.", "A square."),
    ("What is the plural of box?", "Boxes."),
    ("Answer with one word: is ice hot or cold?", "Cold."),
    ("Spell the number six.", "S, I, X."),
]


@dataclass
class MoinclArgs(LoraArgs):
    r: int = setting(8, help="LoRA rank (MoInCL: 8)", bounds=AT_LEAST_1)
    alpha: int = setting(32, help="LoRA alpha (MoInCL: 32)", bounds=POSITIVE)
    dropout: float = setting(
        0.1, help="LoRA dropout (MoInCL: 0.1)", bounds=Bounds(low=0, high=1, high_open=True)
    )
    target_modules: list[str] = setting(
        default_factory=lambda: ["q_proj", "v_proj"],
        help="the LM linears that get LoRA (MoInCL: q and v)",
    )
    ptgm: bool = setting(True, help="pseudo-target generation (off: the 'without PTGM' ablation)")
    pseudo_num: int = setting(
        2, help="pseudo samples added to every training batch", bounds=AT_LEAST_1
    )
    pseudo_max_new_tokens: int = setting(
        24, help="longest pseudo answer the previous model writes", bounds=AT_LEAST_1
    )
    kl_weight: float = setting(
        1.0, help="λ_kl of the distillation on pseudo samples", bounds=NON_NEGATIVE
    )
    temperature: float = setting(5.0, help="τ of both distillations (MoInCL: 5)", bounds=POSITIVE)
    ikd: bool = setting(True, help="instruction-based distillation (off: 'without IKD')")
    ikd_weight: float = setting(1.0, help="weight of the IKD term (MoInCL: 1)", bounds=NON_NEGATIVE)
    ikd_instructions: int = setting(
        4, help="text-only instructions distilled per step (MoInCL: 4)", bounds=AT_LEAST_1
    )
    fusion: bool = setting(False, help="fuse LoRA weights with the old model's after every epoch")
    fusion_alpha: float = setting(
        0.5, help="α of the fusion θ ← (1 − α) θ_old + α θ_new", bounds=Bounds(low=0, high=1)
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.ikd_instructions > len(IKD_INSTRUCTIONS):
            raise ConfigError(
                f"method.args.ikd_instructions: {self.ikd_instructions} is more than the "
                f"{len(IKD_INSTRUCTIONS)} instructions mcit ships"
            )


def task_type(task: Task) -> str:
    return "caption" if task.metric in CAPTION_METRICS else "qa"


@register_method
class Moincl(Lwf):
    name = "moincl"
    args_class = MoinclArgs
    args: MoinclArgs

    def attach(self) -> None:
        super().attach()
        self.learned_types: list[str] = []  # the type of every finished task, in order
        self._pseudo_kind: str | None = None
        self._pseudo_answers: dict[str, str] = {}
        self._step = 0
        self._collate: Collator | None = None

    def _collator(self) -> Collator:
        if self._collate is None:
            self._collate = Collator(self.backbone)
        return self._collate

    # ------------------------------------------------------------------ the stream
    def begin_task(self, task_id: int, task: Task) -> None:
        super().begin_task(task_id, task)  # the previous model: the adapter as the stage begins
        current = task_type(task)
        self._pseudo_kind = None
        if self.args.ptgm and self._old_adapter is not None:
            if current == "qa" and "caption" in self.learned_types:
                self._pseudo_kind = "caption"
            elif current == "caption" and "qa" in self.learned_types:
                self._pseudo_kind = "qa"
        self._pseudo_answers = {}
        self._step = 0

    def end_task(self, task_id: int, task: Task, train_samples: list[Sample]) -> None:
        super().end_task(task_id, task, train_samples)
        self.learned_types.append(task_type(task))

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "learned_types": list(self.learned_types)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)
        self.learned_types = list(state.get("learned_types", self.learned_types))

    # ------------------------------------------------------------------ PTGM
    def pseudo_instruction(self, sample: Sample) -> str:
        modality = sample.modality
        noun = NOUNS.get(modality, modality)
        if self._pseudo_kind == "caption":
            return CAPTION_INSTRUCTION.format(noun=noun)
        questions = PSEUDO_QUESTIONS.get(modality, PSEUDO_QUESTIONS["image"])
        digest = hashlib.sha256(sample.id.encode()).digest()
        return questions[digest[0] % len(questions)]

    def batch_samples(self, samples: list[Sample]) -> list[Sample]:
        if self._pseudo_kind is None:
            return samples
        sources = [s for s in samples if s.media][: self.args.pseudo_num]
        prompts = [
            Sample(
                id=f"pseudo:{self._pseudo_kind}:{s.id}",
                task=s.task,
                turns=[(self.pseudo_instruction(s), "")],
                references=[""],
                metric="exact",
                media=dict(s.media),
            )
            for s in sources
        ]
        missing = [p for p in prompts if p.id not in self._pseudo_answers]
        if missing:
            self._pseudo_answers.update(
                zip([p.id for p in missing], self.previous_answers(missing), strict=True)
            )
        return samples + [
            Sample(
                id=p.id,
                task=p.task,
                turns=[(p.turns[0][0], self._pseudo_answers[p.id])],
                references=[self._pseudo_answers[p.id]],
                metric="exact",
                media=p.media,
            )
            for p in prompts
        ]

    def previous_answers(self, prompts: list[Sample]) -> list[str]:
        """The previous model's greedy answers to `prompts` (never the current model's)."""
        batch = self._collator()(prompts, with_answer=False).to(self.backbone.device)
        with self._as_old_model():
            answers = self.generate(batch, max_new_tokens=self.args.pseudo_max_new_tokens)
        return [a or "." for a in answers]  # an empty answer still trains the EOS

    # ------------------------------------------------------------------ the loss
    def training_loss(self, batch: Batch) -> LossOutput:
        old = self._old_adapter is not None
        pseudo_rows = torch.tensor(
            [s.id.startswith("pseudo:") for s in batch.samples], device=batch.input_ids.device
        )
        ikd_batch = self._ikd_batch() if old and self.args.ikd else None
        old_logits = old_ikd = None
        if (old and bool(pseudo_rows.any())) or ikd_batch is not None:
            with self._as_old_model():  # before the new passes, as in LwF
                if bool(pseudo_rows.any()):
                    old_logits = self.lm_logits(batch)
                if ikd_batch is not None:
                    old_ikd = self.lm_logits(ikd_batch)
        logits = self.lm_logits(batch)
        lm = self.backbone.lm_loss(logits, batch.labels)  # real and pseudo samples
        loss, parts = lm, {"lm": lm.item()}
        if old_logits is not None:
            labels = batch.labels.masked_fill(~pseudo_rows[:, None], IGNORE)
            kl = distillation_loss(old_logits, logits, labels, self.args.temperature)
            loss = loss + self.args.kl_weight * kl  # λ_kl τ² KL(p_old ‖ p_new), pseudo answers
            parts["pseudo_kl"] = kl.item()
        if old_ikd is not None:
            ikd = distillation_loss(
                old_ikd, self.lm_logits(ikd_batch), ikd_batch.labels, self.args.temperature
            )
            loss = loss + self.args.ikd_weight * ikd  # τ² KL(old ‖ new) on instructions
            parts["ikd"] = ikd.item()
        self._step += 1
        return LossOutput(loss, parts)

    def _ikd_batch(self) -> Batch:
        """This step's text-only instructions: the next `ikd_instructions` of the rotation."""
        n = self.args.ikd_instructions
        start = (self._step * n) % len(IKD_INSTRUCTIONS)
        pairs = [IKD_INSTRUCTIONS[(start + k) % len(IKD_INSTRUCTIONS)] for k in range(n)]
        samples = [
            Sample(f"ikd:{start + k}", "ikd", [(q, a)], [a], "exact", media={})
            for k, (q, a) in enumerate(pairs)
        ]
        return self._collator()(samples).to(self.backbone.device)

    # ------------------------------------------------------------------ fusion
    def end_epoch(self) -> None:
        if not self.args.fusion or self._old_adapter is None:
            return
        params = dict(self.named_parameters())
        alpha = self.args.fusion_alpha
        with torch.no_grad():
            for name, old in self._old_adapter.items():
                live = params[name]
                live.copy_(
                    (1 - alpha) * old.to(live.dtype) + alpha * live
                )  # θ ← (1−α)θ_old + αθ_new
