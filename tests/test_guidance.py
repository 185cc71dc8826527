"""Frozen CLIP guidance features: what f_img and f_txt are, instruction-only text, truncation,
both text variants, the bounded cache, and a clear error for a CLIP that cannot be used."""

import pytest
import torch
from PIL import Image
from transformers import AutoTokenizer, CLIPConfig, CLIPModel
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from mcit.data.sample import Sample
from mcit.errors import BackboneError
from mcit.models.guidance import GuidanceEncoder, instruction_text


def _sample(path, question, sid="s", previous=()):
    return Sample(
        id=sid,
        task="anything",
        turns=[*previous, (question, "answer")],
        references=["answer"],
        metric="exact",
        media={"image": str(path)},
    )


@pytest.fixture
def images(tmp_path):
    paths = []
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        path = tmp_path / f"im{i}.png"
        Image.new("RGB", (64, 64), colour).save(path)
        paths.append(path)
    return paths


def _by_hand_text(encoder, text, project):
    tok = encoder.tokenizer
    ids = tok(text, add_special_tokens=False)["input_ids"][:76] + [tok.eos_token_id]
    ids = torch.tensor([ids])
    pooled = encoder.model.text_model(input_ids=ids).pooler_output
    return encoder.model.text_projection(pooled) if project else pooled


def test_features_are_clips_image_embedding_and_pooled_instruction(micro_backbone_dirs, images):
    _, clip_dir = micro_backbone_dirs
    encoder = GuidanceEncoder(clip_dir)
    question = "What colour is the ball?\nAnswer the question using a single word or phrase."
    sample = _sample(images[0], question, previous=[("An earlier turn", "reply")])
    feats = encoder.features([sample], "cpu")
    pixels = encoder.processor(images=[Image.open(images[0]).convert("RGB")], return_tensors="pt")
    with torch.no_grad():
        f_img = encoder.model.get_image_features(pixel_values=pixels["pixel_values"]).pooler_output
        # Instruction only: the last user turn's text, no system prompt, tags or earlier turns.
        f_txt = _by_hand_text(encoder, question, project=False)
    assert feats.image.shape == (1, encoder.dim) and feats.has_image.tolist() == [True]
    torch.testing.assert_close(feats.image, f_img, rtol=0, atol=1e-6)
    torch.testing.assert_close(feats.text, f_txt, rtol=0, atol=1e-6)
    assert not any(p.requires_grad for p in encoder.model.parameters())


def test_text_projection_variant_is_the_projected_pooled_output(micro_backbone_dirs, images):
    _, clip_dir = micro_backbone_dirs
    sample = _sample(images[1], "Is the square left of the circle?")
    code = GuidanceEncoder(clip_dir, text_projection=False).features([sample], "cpu").text
    paper_encoder = GuidanceEncoder(clip_dir, text_projection=True)
    paper = paper_encoder.features([sample], "cpu").text
    with torch.no_grad():
        expected = paper_encoder.model.text_projection(code)
    torch.testing.assert_close(paper, expected, rtol=0, atol=1e-6)
    assert not torch.allclose(paper, code)


def test_long_instructions_are_truncated_to_77_positions(micro_backbone_dirs, images):
    _, clip_dir = micro_backbone_dirs
    encoder = GuidanceEncoder(clip_dir)
    long_question = " ".join(["red blue green circle square"] * 40)
    ids = encoder.tokenizer(long_question, add_special_tokens=False)["input_ids"]
    assert len(ids) > 100
    got = encoder.features([_sample(images[0], long_question)], "cpu").text
    with torch.no_grad():
        expected = _by_hand_text(encoder, long_question, project=False)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    # Anything after the first 76 tokens (+ EOS) is not read.
    prefix_text = encoder.tokenizer.decode(ids[:76])
    longer = prefix_text + " triangle triangle"
    assert encoder.tokenizer(longer, add_special_tokens=False)["input_ids"][:76] == ids[:76]
    torch.testing.assert_close(
        encoder.features([_sample(images[0], longer)], "cpu").text, got, rtol=0, atol=0
    )


def test_instruction_text_drops_media_tags():
    sample = _sample("x.png", "<image>\nWhat is written?")
    assert instruction_text(sample) == "What is written?"


def test_cache_is_exact_keyed_by_content_and_bounded(micro_backbone_dirs, images):
    _, clip_dir = micro_backbone_dirs
    encoder = GuidanceEncoder(clip_dir, cache_size=2)
    samples = [_sample(p, f"question {i}", sid="same-id") for i, p in enumerate(images)]
    first = encoder.features(samples, "cpu")
    # Three distinct images and texts, one sample id: content keys keep them apart.
    assert len({tuple(r.tolist()) for r in first.image}) == 3
    assert len(encoder._image_cache) == 3  # a batch is never evicted from under itself
    encoder.features(samples[:1], "cpu")
    assert len(encoder._image_cache) == 2 and len(encoder._text_cache) == 2
    again = encoder.features(samples, "cpu")  # recomputed after eviction: the same features
    # (up to float rounding: CPU kernels round differently for other batch sizes)
    torch.testing.assert_close(again.image, first.image, rtol=0, atol=1e-5)
    torch.testing.assert_close(again.text, first.text, rtol=0, atol=1e-5)
    cached = encoder.features(samples[:2], "cpu")  # hits: exactly the stored features
    assert torch.equal(cached.image, again.image[:2]) and torch.equal(cached.text, again.text[:2])
    # A batch's features do not depend on what else is in it.
    alone = encoder.features(samples[2:], "cpu")
    fresh = GuidanceEncoder(clip_dir).features(samples[2:], "cpu")
    torch.testing.assert_close(alone.image, fresh.image, rtol=0, atol=1e-5)


def test_samples_without_an_image_get_zero_image_features(micro_backbone_dirs, images):
    _, clip_dir = micro_backbone_dirs
    text_only = Sample("t", "x", [("What is two plus two?", "4")], ["4"], "exact", media={})
    feats = GuidanceEncoder(clip_dir).features([_sample(images[0], "q"), text_only], "cpu")
    assert feats.has_image.tolist() == [True, False]
    assert torch.equal(feats.image[1], torch.zeros(feats.image.shape[1]))


def test_unusable_clip_is_a_clear_error(micro_backbone_dirs, tmp_path):
    with pytest.raises(BackboneError, match="not a CLIP directory"):
        GuidanceEncoder(tmp_path)
    config = CLIPConfig(
        text_config={"hidden_size": 24, "intermediate_size": 48, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "vocab_size": 50},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 16},
        projection_dim=16,
    )  # fmt: skip
    CLIPModel(config).save_pretrained(tmp_path / "clip")
    with pytest.raises(BackboneError, match="cannot load as a CLIP directory"):
        GuidanceEncoder(tmp_path / "clip")  # no tokenizer / processor saved
    _, micro_clip = micro_backbone_dirs
    AutoTokenizer.from_pretrained(micro_clip).save_pretrained(tmp_path / "clip")
    CLIPImageProcessorPil.from_pretrained(micro_clip).save_pretrained(tmp_path / "clip")
    # Pooled text (width 24) and image embedding (16) cannot be compared without the projection.
    with pytest.raises(BackboneError, match="text_projection=true"):
        GuidanceEncoder(tmp_path / "clip")
    assert GuidanceEncoder(tmp_path / "clip", text_projection=True).dim == 16
