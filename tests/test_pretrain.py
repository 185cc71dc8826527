"""The base's recipe: identical weights from identical builds, exact resume, clear errors."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mcit.cli import main
from mcit.pretrain import build
from mcit.pretrain.build import BuildError, batch_indices, build_base, phase_batch
from mcit.pretrain.recipes import DEFAULT_RECIPE, RECIPES, recipe, recipe_name

MICRO = RECIPES["micro"]


def _weights(root: Path) -> dict[str, torch.Tensor]:
    out = {}
    for part, file in [
        ("llava", "model.safetensors"),
        ("clip", "model.safetensors"),
        ("audio", "model.safetensors"),
        ("audio", "heads.safetensors"),
    ]:
        for key, value in load_file(root / part / file).items():
            out[f"{part}.{key}"] = value
    return out


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def micro_build(tmp_path_factory) -> Path:
    return build_base(MICRO, tmp_path_factory.mktemp("b1") / "base", progress=False, recipe="micro")


def test_same_recipe_and_seed_give_identical_weights(micro_build, tmp_path):
    torch.set_num_threads(1)
    again = build_base(MICRO, tmp_path / "again", progress=False, recipe="micro")
    assert _same(_weights(micro_build), _weights(again))
    other = build_base(dataclasses.replace(MICRO, seed=1), tmp_path / "s1", progress=False)
    assert not _same(_weights(micro_build), _weights(other))
    # bf16 autocast is on in the LLaVA stage (and only there): the same build in fp32 differs
    # in the LLaVA weights alone.
    fp32 = _weights(
        build_base(dataclasses.replace(MICRO, llava_bf16=False), tmp_path / "f", progress=False)
    )
    bf16 = _weights(micro_build)
    differ = {key.split(".")[0] for key in bf16 if not torch.equal(bf16[key], fp32[key])}
    assert differ == {"llava"}


def test_a_recipe_with_short_answers_is_probed_for_them_too(tmp_path):
    """A base taught short answers is asked every probe question a second time for one: the
    card holds a score for every skill but the description, beside the sentence probe."""
    torch.set_num_threads(1)
    root = build_base(
        dataclasses.replace(MICRO, short_answers=0.5), tmp_path / "short", progress=False
    )
    card = json.loads((root / "model_card.json").read_text())
    short = card["probe"]["short_answers"]
    assert set(short) == set(card["probe"]["skills"])  # the description is scored by CIDEr
    assert all(0.0 <= v <= 100.0 for v in short.values())
    assert card["config"]["short_answers"] == 0.5
    assert "| skill | short answer |" in (root / "MODEL_CARD.md").read_text()
    # a card without them (the shipped base's) renders as before
    from mcit.pretrain.card import model_card_markdown
    from mcit.pretrain.shipped import shipped_dir

    shipped = json.loads((shipped_dir(DEFAULT_RECIPE) / "model_card.json").read_text())
    assert "short answer" not in model_card_markdown(shipped)


def test_interrupted_build_resumes_to_the_same_weights(micro_build, tmp_path):
    out = tmp_path / "killed"
    # A zero-second limit stops the LLaVA stage after its first step, with a checkpoint.
    build_base(MICRO, out, progress=False, max_stage_seconds=0)
    assert not (out / "DONE").is_file()
    saved = torch.load(out / ".build" / "llava-checkpoint" / "trainer.pt", weights_only=True)
    assert saved["step"] == 1
    state = json.loads((out / ".build" / "state.json").read_text())
    assert set(state["done"]) == {"tokenizer", "clip", "audio", "features"}
    with pytest.raises(BuildError, match="pass --resume"):
        build_base(MICRO, out, progress=False)
    with pytest.raises(BuildError, match=r"differs in \['llava_lr'\]"):
        build_base(dataclasses.replace(MICRO, llava_lr=0.5), out, resume=True, progress=False)
    build_base(MICRO, out, resume=True, progress=False)
    assert (out / "DONE").is_file() and not (out / ".build").exists()
    assert _same(_weights(micro_build), _weights(out))
    # Where the stages that can use an accelerator ran, over both runs of the build.
    card = json.loads((out / "model_card.json").read_text())
    assert card["built_on"]["devices"] == {"features": "cpu", "llava": "cpu"}
    assert "; features on cpu; llava on cpu |" in (out / "MODEL_CARD.md").read_text()


def test_a_base_built_before_the_audio_stage_gains_it_and_nothing_else_changes(
    micro_build, tmp_path
):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(micro_build, old)
    shutil.rmtree(old / "audio")
    card = json.loads((old / "model_card.json").read_text())
    for key in ("audio_probe",):
        card.pop(key)
    (old / "model_card.json").write_text(json.dumps(card))
    before = {k: v for k, v in _weights(micro_build).items() if not k.startswith("audio.")}
    build_base(MICRO, old, progress=False)
    after = _weights(old)
    assert _same(after, _weights(micro_build))  # the same audio encoder as a full build
    assert _same({k: v for k, v in after.items() if not k.startswith("audio.")}, before)
    card = json.loads((old / "model_card.json").read_text())
    assert set(card["audio_probe"]) == {"tone", "chirp", "noise", "beats", "mean"}
    assert card["audio_stage"]["config"]["audio_steps"] == MICRO.audio_steps
    assert "## Audio encoder probe" in (old / "MODEL_CARD.md").read_text()


def test_the_shipped_audio_encoder_hears_what_the_audio_tasks_ask():
    """Held-out sounds (a seed never trained on), each matched to the nearest class
    description: the kind and its value (pitch, direction, loudness, count of beats)."""
    from safetensors.torch import load_file
    from torch import nn
    from transformers import AutoTokenizer, CLIPModel

    from mcit.models.audio import load_audio_encoder
    from mcit.pretrain.audio import CLASSES, DESCRIPTIONS, probe_audio
    from mcit.pretrain.build import _encode_texts, _pad_right
    from mcit.pretrain.shipped import shipped_dir

    root = shipped_dir(DEFAULT_RECIPE)
    config = RECIPES[DEFAULT_RECIPE]
    encoder = load_audio_encoder(root / "audio", tokens=1)
    heads = load_file(root / "audio" / "heads.safetensors")
    audio_head, text_head = nn.Linear(*heads["audio_head.weight"].T.shape), nn.Linear(128, 128)
    audio_head.load_state_dict({k[11:]: v for k, v in heads.items() if k.startswith("audio_")})
    text_head.load_state_dict({k[10:]: v for k, v in heads.items() if k.startswith("text_")})
    tokenizer = AutoTokenizer.from_pretrained(root / "clip")
    clip = CLIPModel.from_pretrained(root / "clip").eval()
    texts = [t for c in CLASSES for t in DESCRIPTIONS[c]]
    ids, mask = _pad_right(_encode_texts(tokenizer, texts, 77), tokenizer.pad_token_id)
    with torch.no_grad():
        text = clip.get_text_features(input_ids=ids, attention_mask=mask)
    text = getattr(text, "pooler_output", text).reshape(len(CLASSES), 3, -1)
    scores = probe_audio(encoder, audio_head, text_head, text, config)
    card = json.loads((root / "model_card.json").read_text())
    assert scores == card["audio_probe"]  # the card's figures, reproduced
    assert min(scores[k] for k in ("tone", "chirp", "noise", "beats")) >= 85.0


def test_a_killed_feature_stage_keeps_its_finished_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "FEATURE_CHUNK", 32)  # the micro mixture's 80 pictures: 3 chunks
    calls = []
    real = build._images_to_tensor

    def failing_on_the_third_chunk(images, processor):  # call 1 is the CLIP stage
        calls.append(len(images))
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(images, processor)

    monkeypatch.setattr(build, "_images_to_tensor", failing_on_the_third_chunk)
    out = tmp_path / "b"
    with pytest.raises(KeyboardInterrupt):
        build_base(MICRO, out, progress=False)
    assert len(list((out / ".build" / "features").glob("*.safetensors"))) == 2
    calls.clear()
    monkeypatch.setattr(build, "_images_to_tensor", real)
    build_base(MICRO, out, resume=True, progress=False)
    assert (out / "DONE").is_file()


def test_batches_are_a_function_of_the_step():
    lengths = [i % 7 for i in range(100)]
    first = [batch_indices(s, lengths, 8, seed=3) for s in range(24)]
    assert first == [batch_indices(s, lengths, 8, seed=3) for s in range(24)]
    assert all(len(b) == 8 and all(0 <= i < 100 for i in b) for b in first)
    # Within a group of batches, each batch holds similar lengths (sorted before cutting).
    spans = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in first]
    assert sum(spans) / len(spans) < 3
    assert first != [batch_indices(s, lengths, 8, seed=4) for s in range(24)]


def test_a_lookup_phase_comes_first_and_leaves_the_mixture_batches_alone():
    """The lookup phase's records are the last `lookup_samples`; its steps come first and draw
    from them alone; the mixture's steps after it are the mixture's batches of a build without
    the phase, step for step."""
    lengths = [i % 5 for i in range(40)]  # 30 mixture records, then 10 of the lookup phase
    config = dataclasses.replace(MICRO, llava_batch=4, lookup_samples=10, lookup_steps=3)
    plain = dataclasses.replace(MICRO, llava_batch=4)
    for step in range(3):
        picked = phase_batch(step, lengths, config)
        assert len(picked) == 4 and all(30 <= i < 40 for i in picked)
    for step in range(12):
        assert phase_batch(step + 3, lengths, config) == phase_batch(step, lengths[:30], plain)
        assert phase_batch(step, lengths[:30], plain) == batch_indices(
            step, lengths[:30], 4, MICRO.seed + 7
        )
    with pytest.raises(ValueError, match="a lookup phase needs both"):
        dataclasses.replace(MICRO, lookup_samples=10)
    with pytest.raises(ValueError, match="not negative"):
        dataclasses.replace(MICRO, lookup_samples=-1, lookup_steps=-1)


def test_a_build_with_a_lookup_phase_records_it(micro_build, tmp_path):
    torch.set_num_threads(1)
    config = dataclasses.replace(MICRO, lookup_samples=16, lookup_steps=2)
    root = build_base(config, tmp_path / "lookup", progress=False)
    card = json.loads((root / "model_card.json").read_text())
    assert card["config"]["lookup_steps"] == 2 and card["seeds"]["lookup_batches"] == 9
    assert "lookups" not in json.loads((micro_build / "model_card.json").read_text())["seeds"]
    ours, plain = _weights(root), _weights(micro_build)
    differ = {key.split(".")[0] for key in ours if not torch.equal(ours[key], plain[key])}
    assert differ == {"llava"}  # the phase trains the LLaVA stage only


def test_recipes_are_named_and_overridable():
    assert recipe_name(recipe("micro")) == "micro"
    assert recipe_name(recipe("micro", seed=5)) is None
    with pytest.raises(KeyError, match="unknown pre-training recipe 'nope'"):
        recipe("nope")


def test_pretrain_cli_builds_into_out_and_refuses_unknown_recipes(micro_build, tmp_path, capsys):
    assert main(["pretrain", "--recipe", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "unknown (known: " in capsys.readouterr().err
    out = tmp_path / "base"
    assert main(["pretrain", "--recipe", "micro", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert f"tiny base (micro): {out}" in printed and "held-out probe" in printed
    card = json.loads((out / "model_card.json").read_text())
    assert card["config"] == dataclasses.asdict(MICRO)
    assert card["code_hash"] == build.recipe_code_hash()
    # Same recipe, same generated mixture: the same data hash as the first build's.
    first = json.loads((micro_build / "model_card.json").read_text())
    assert len(card["data_hash"]) == 64 and card["data_hash"] == first["data_hash"]


def test_pretrain_cli_refuses_a_device_this_machine_lacks(tmp_path, capsys, monkeypatch):
    """Before any work, in one line naming the option; nothing is written."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "base"
    cases = {
        "cuda": f"this torch ({torch.__version__}) sees no CUDA device",
        "gpu": "not a torch device (cpu, cuda, cuda:N)",
        "mps": "only cpu and cuda devices are supported",
    }
    for name, reason in cases.items():
        assert main(["pretrain", "--recipe", "micro", "--out", str(out), "--device", name]) == 2
        assert capsys.readouterr().err == f"mcit pretrain: error: --device {name}: {reason}\n"
    assert not out.exists()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert main(["pretrain", "--recipe", "micro", "--out", str(out), "--device", "cuda:1"]) == 2
    assert "--device cuda:1: this machine has 1 CUDA device(s)" in capsys.readouterr().err


def test_a_stage_resumed_on_another_device_records_both(tmp_path):
    """The model card names every device a stage ran on, in order, once each."""
    from mcit.pretrain.card import model_card_markdown
    from mcit.pretrain.shipped import shipped_dir

    state = build.BuildState(tmp_path, MICRO, resume=False)
    state.add_seconds("llava", 10.0, "cpu")
    state.add_seconds("llava", 5.0, "cuda:0 (NVIDIA H200)")
    state.finish("llava", 1.0, device="cuda:0 (NVIDIA H200)", steps=3)
    assert state.devices("llava") == "cpu, cuda:0 (NVIDIA H200)"
    assert state.devices("features") == "cpu"  # a stage that never said where: the CPU
    assert state.data["seconds"]["llava"] == 16.0
    again = build.BuildState(tmp_path, MICRO, resume=True)  # read back from state.json
    assert again.devices("llava") == "cpu, cuda:0 (NVIDIA H200)"
    shipped = json.loads((shipped_dir(DEFAULT_RECIPE) / "model_card.json").read_text())
    shipped["built_on"]["devices"] = {"features": "cpu", "llava": again.devices("llava")}
    assert "; features on cpu; llava on cpu, cuda:0 (NVIDIA H200) |" in model_card_markdown(shipped)
