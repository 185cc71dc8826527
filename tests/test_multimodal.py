"""The multimodal backbone: audio through a Whisper encoder, video through the image tower,
per-modality projections and cues, and runs, predictions and the shipped audio encoder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from conftest import micro_overrides
from PIL import Image
from transformers import WhisperModel
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from mcit.config import BackboneConfig, load_config
from mcit.data.benchmarks import load_benchmark_spec, load_tasks
from mcit.data.collate import Collator
from mcit.data.micl_mini.generate import generate_micl_mini
from mcit.data.sample import Sample, stream_modalities
from mcit.errors import BackboneError
from mcit.models.audio import load_audio_encoder, tiny_feature_extractor, tiny_whisper_config
from mcit.models.backbone import load_llava_dir
from mcit.models.media import pool_frames
from mcit.runner import run

ALL = ("image", "audio", "video")


@pytest.fixture(scope="module")
def micl(tmp_path_factory) -> Path:
    return generate_micl_mini(tmp_path_factory.mktemp("m") / "micl", 0, 6, 3, progress=False)


@pytest.fixture(scope="module")
def backbone(micro_backbone_dirs):
    llava, clip = micro_backbone_dirs
    config = BackboneConfig()
    return load_llava_dir(llava, config, str(clip), config.chat, ALL, llava.parent / "audio")


def _whisper_dir(tmp_path: Path, encoder_only: bool) -> Path:
    torch.manual_seed(0)
    config = tiny_whisper_config(mels=16, hidden=32, layers=1, heads=2, seconds=1)
    model = WhisperEncoder(config) if encoder_only else WhisperModel(config)
    out = tmp_path / ("encoder" if encoder_only else "whisper")
    model.save_pretrained(out)
    tiny_feature_extractor(16, 1).save_pretrained(out)
    return out


@pytest.mark.parametrize("encoder_only", [False, True])
def test_a_whisper_directory_loads_as_the_audio_encoder(tmp_path, encoder_only):
    path = _whisper_dir(tmp_path, encoder_only)
    encoder = load_audio_encoder(path, tokens=5)
    clips = [np.zeros(8000, np.float32), np.random.default_rng(0).normal(0, 0.1, 16000)]
    mels, frames = encoder.log_mel([c.astype(np.float32) for c in clips])
    assert mels.shape == (2, 16, 100)  # 1 s window at 100 frames a second
    assert frames.tolist() == [50, 100]  # the half-second clip covers half the window
    with torch.no_grad():
        out = encoder(mels, frames)
        hidden = encoder.encoder(mels).last_hidden_state
    assert out.shape == (2, 5, 32)
    # Only the encoder positions covering the clip are pooled (25 of 50 for half a second).
    by_hand = torch.nn.functional.adaptive_avg_pool1d(hidden[0, :25].T[None], 5)[0].T
    assert torch.allclose(out[0], by_hand, atol=1e-6)


def test_an_audio_directory_that_is_not_whisper_is_named(tmp_path, micro_backbone_dirs):
    llava, _ = micro_backbone_dirs
    with pytest.raises(BackboneError, match=r"config.json: model_type is 'llava'"):
        load_audio_encoder(llava, tokens=4)
    with pytest.raises(BackboneError, match="no config.json"):
        load_audio_encoder(tmp_path, tokens=4)
    (tmp_path / "config.json").write_text('{"model_type": "whisper",\n "d_model": }\n')
    with pytest.raises(BackboneError) as err:
        load_audio_encoder(tmp_path, tokens=4)
    assert str(err.value) == (
        f"{tmp_path / 'config.json'}: not valid JSON (line 2, column 13: Expecting value)"
    )


def test_frames_are_pooled_per_frame_and_kept_in_order():
    feats = torch.arange(2 * 4 * 16 * 3, dtype=torch.float32).reshape(2, 4, 16, 3)
    out = pool_frames(feats, 4)
    assert out.shape == (2, 16, 3)
    grid = feats[0, 1].reshape(4, 4, 3)
    assert torch.equal(out[0, 4], grid[:2, :2].mean((0, 1)))  # frame 2, top-left cell
    swapped = pool_frames(feats[:, [1, 0, 2, 3]], 4)
    assert torch.equal(swapped[:, :4], out[:, 4:8])
    assert pool_frames(torch.ones(1, 2, 5, 3), 3).shape == (1, 6, 3)  # not square: 1-D pool


def test_the_collator_gives_each_medium_its_cue_and_slots(backbone, micl):
    tasks = {t.name: t for t in load_tasks(load_benchmark_spec(micl))}
    collate = Collator(backbone)
    tok = backbone.tokenizer
    for name, cue, count in [("audiocaps", "audio: ", 8), ("msrvtt", "video: ", 16)]:
        sample = tasks[name].train[0]
        ids, _ = collate.encode(sample, with_answer=True)
        modality = tasks[name].modality
        slot = backbone.media_token_ids[modality]
        assert ids.count(slot) == count == backbone.media_tokens[modality]
        first = ids.index(slot)
        cue_ids = tok(cue, add_special_tokens=False)["input_ids"]
        assert ids[first - len(cue_ids) : first] == cue_ids
    image = tasks["flickr30k"].train[0]
    ids, _ = collate.encode(image, with_answer=True)
    assert ids.count(backbone.image_token_id) == backbone.num_image_tokens
    assert "audio" not in tok.decode(ids) and "video" not in tok.decode(ids)
    batch = collate([tasks["audiocaps"].train[0], image, tasks["msvdqa"].train[0]])
    assert batch.audio[0].shape[0] == 1 and batch.video.shape[:2] == (1, 4)
    assert batch.pixel_values.shape[0] == 1


def test_media_features_land_in_their_slots_and_nowhere_else(backbone, micl):
    tasks = {t.name: t for t in load_tasks(load_benchmark_spec(micl))}
    batch = Collator(backbone)([tasks["clothoaqa"].train[0], tasks["msrvtt"].train[0]])
    with torch.no_grad():
        embeds = backbone.embed_batch(batch)
        text = backbone.input_embeddings(batch.input_ids)
        audio = backbone.media.audio(backbone.audio_encoder(*batch.audio))
        frames = backbone.vision_features(batch.video.flatten(0, 1))
        # frame positions start at zero: a video token is the image projector on its frame
        video = backbone.projector(pool_frames(frames.reshape(1, 4, *frames.shape[1:]), 4))
    audio_slots = batch.input_ids == backbone.media_token_ids["audio"]
    video_slots = batch.input_ids == backbone.media_token_ids["video"]
    assert torch.allclose(embeds[audio_slots], audio.reshape(-1, audio.shape[-1]), atol=1e-6)
    assert torch.allclose(embeds[video_slots], video.reshape(-1, video.shape[-1]), atol=1e-5)
    rest = ~(audio_slots | video_slots)
    assert torch.equal(embeds[rest], text[rest])


def test_the_media_side_is_frozen_and_the_same_in_every_load(backbone, micro_backbone_dirs):
    llava, clip = micro_backbone_dirs
    config = BackboneConfig()
    again = load_llava_dir(llava, config, str(clip), config.chat, ALL, llava.parent / "audio")
    assert not any(p.requires_grad for p in backbone.parameters())
    for (name, a), (_, b) in zip(
        backbone.media.state_dict().items(), again.media.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    image_only = load_llava_dir(llava, config, str(clip), config.chat)
    assert image_only.media is None and image_only.audio_encoder is None


def test_a_backbone_loaded_for_images_refuses_audio_in_one_line(micro_backbone_dirs, micl):
    llava, clip = micro_backbone_dirs
    config = BackboneConfig()
    image_only = load_llava_dir(llava, config, str(clip), config.chat)
    (audio, *_) = [t for t in load_tasks(load_benchmark_spec(micl)) if t.modality == "audio"]
    with pytest.raises(BackboneError, match=r"carries audio: this backbone was loaded for image"):
        Collator(image_only)(audio.train[:1])
    with pytest.raises(BackboneError, match="audio_path: the benchmark has audio"):
        load_llava_dir(llava, config, str(clip), config.chat, ALL, None)


def test_a_tokenizer_without_media_tokens_gains_them(micro_backbone_dirs, tmp_path):
    """A llava-hf checkpoint knows `<image>` only: `<audio>` and `<video>` are added and the
    LM's embedding grows by their rows; the image path is unchanged."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlavaForConditionalGeneration, PreTrainedTokenizerFast

    llava, _ = micro_backbone_dirs
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    specials = ["<pad>", "<unk>", "<s>", "</s>", "<image>"]
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(["a red square", "what colour is it"], trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    model = LlavaForConditionalGeneration.from_pretrained(llava)
    model.resize_token_embeddings(len(tok))
    model.config.image_token_id = tok.convert_tokens_to_ids("<image>")
    out = tmp_path / "hf"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    for file in ("preprocessor_config.json",):
        (out / file).write_text((llava / file).read_text())
    config = BackboneConfig(name="hf", path=str(out))
    before = len(tok)
    bb = load_llava_dir(out, config, None, config.chat, ("image", "video"))
    assert "<video>" in bb.tokenizer.get_vocab() and "<audio>" not in bb.tokenizer.get_vocab()
    assert bb.input_embeddings.weight.shape[0] == before + 1
    assert bb.media_token_ids["video"] == before


def test_a_micl_mini_run_records_its_media_and_answers_audio(
    micl, micro_backbone_dirs, tmp_path, capsys
):
    from mcit.cli import main

    overrides = [
        *micro_overrides(micl, tmp_path),
        "data.order=order1",
        "data.train_per_task=4",
        "data.test_per_task=2",
        "train.max_steps_per_task=1",
        "model.backbone.train_media_projections=true",
        "name=micl",
    ]
    config = load_config(None, overrides)
    results = run(config, progress=False)
    assert results.tasks[0] == "audiocaps" and len(results.matrix) == 6
    saved = json.loads((tmp_path / "micl" / "results.json").read_text())
    assert saved["manifest"]["modalities"] == ["audio", "image", "video"]
    assert saved["task_modalities"]["audiocaps"] == "audio"
    assert saved["task_modalities"]["msrvtt"] == "video"
    # MICL's model: the projections trained with the LoRA and were saved with it.
    from safetensors.torch import load_file

    first = load_file(tmp_path / "micl" / "stage_1" / "method.safetensors")
    last = load_file(tmp_path / "micl" / "stage_6" / "method.safetensors")
    audio = [k for k in first if k.startswith("backbone.media.audio.")]
    video = [k for k in first if k.startswith("backbone.media.video.")]
    assert audio and video and any("lora_" in k for k in first)
    # audio trained in stage 1 (audiocaps); the video projection only from stage 3 (msvdqa)
    assert any(not torch.equal(first[k], last[k]) for k in video)
    tasks = load_tasks(load_benchmark_spec(micl), order="order2")
    assert stream_modalities(tasks) == ("image", "video", "audio")  # in order of appearance
    clip = tmp_path / "beep.wav"
    t = np.arange(16000) / 16000
    soundfile.write(clip, (0.5 * np.sin(2 * np.pi * 900 * t)).astype(np.float32), 16000)
    question = "Is the tone high or low?"
    assert main(["predict", str(tmp_path / "micl"), "--audio", str(clip), "--question", question,
                 "--json"]) == 0  # fmt: skip
    answer = json.loads(capsys.readouterr().out)
    assert answer["media"] == {"audio": str(clip)} and isinstance(answer["answer"], str)
    # The same answer as the run's own collation of that clip gives (no task id involved).
    from mcit.predict import load_trained

    _, method, _, _ = load_trained(tmp_path / "micl", modality="audio")
    restored = dict(method.named_parameters())
    assert all(torch.equal(restored[k], last[k]) for k in audio + video)  # from stage 6's file
    sample = Sample("x", "", [(question, "")], [""], "exact", media={"audio": str(clip)})
    batch = Collator(method.backbone)([sample], with_answer=False)
    assert method.generate(batch, max_new_tokens=24)[0] == answer["answer"]
    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(4):
        Image.new("RGB", (64, 64), (40 * k, 0, 0)).save(frames / f"{k}.png")
    q = "What shape appears?"
    assert main(["predict", str(tmp_path / "micl"), "--video", str(frames), "--question", q]) == 0
    slow = tmp_path / "slow.wav"
    soundfile.write(slow, np.zeros(8000, np.float32), 8000)
    assert (
        main(["predict", str(tmp_path / "micl"), "--audio", str(slow), "--question", question]) == 2
    )
    assert (
        "slow.wav: sample rate 8000 Hz, the audio encoder's is 16000 Hz" in capsys.readouterr().err
    )


def test_trained_projections_are_among_what_every_training_method_sees(micro_backbone_dirs):
    """With train_media_projections, the projections train before `attach`: a method that
    reads what trains while attaching (EWC's Fisher and anchor) covers them too."""
    from mcit.methods.base import build_method, method_class, method_names

    llava, clip = micro_backbone_dirs
    config = BackboneConfig(train_media_projections=True)
    for name in method_names():
        bb = load_llava_dir(llava, config, str(clip), config.chat, ALL, llava.parent / "audio")
        method = build_method(name, bb)
        media = {id(p) for p in bb.media.parameters()}
        trained = {id(p) for p in method.trainable_parameters()}
        assert (media <= trained) is method_class(name)[0].trains, name
        if name == "ewc":
            keys = [k for k, _ in method.named_parameters() if k.startswith("backbone.media.")]
            assert keys and all(
                method.fisher.of(k).shape == method.anchor.of(k).shape for k in keys
            )
            assert float(method.penalty()) == 0.0


def test_trained_projections_stay_float32_on_a_bf16_model(micro_backbone_dirs, micl):
    """A real-model MICL run loads the LLaVA in bf16: the audio and video projections that train
    with the method are float32 (AdamW's small steps would round away in bf16), the frozen rest
    stays bf16, and a batch of audio and video trains them through the bf16 model."""
    from mcit.methods.base import build_method
    from mcit.train.trainer import check_trainable_precision

    llava, clip = micro_backbone_dirs
    config = BackboneConfig(train_media_projections=True, dtype="bfloat16")
    bb = load_llava_dir(llava, config, str(clip), config.chat, ALL, llava.parent / "audio")
    method = build_method("finetune-lora", bb)
    assert {p.dtype for p in bb.media.parameters()} == {torch.float32}
    assert bb.model.lm_head.weight.dtype == torch.bfloat16
    check_trainable_precision(method)  # nothing trains in half precision
    tasks = {t.name: t for t in load_tasks(load_benchmark_spec(micl))}
    batch = Collator(bb)([tasks["clothoaqa"].train[0], tasks["msrvtt"].train[0]])
    method.training_loss(batch).loss.backward()
    for name in ("audio", "video"):
        grads = [p.grad for p in getattr(bb.media, name).parameters()]
        assert all(g is not None and g.dtype == torch.float32 for g in grads), name
        assert any(float(g.abs().sum()) > 0 for g in grads), name
