import pytest
import torch

from mcit.config import BackboneConfig, ChatFormat
from mcit.data.collate import IGNORE, Collator
from mcit.data.sample import Sample
from mcit.errors import ConfigError
from mcit.models.backbone import load_llava_dir


def _backbone(dirs):
    llava_dir, clip_dir = dirs
    return load_llava_dir(
        llava_dir, BackboneConfig(), clip_dir=str(clip_dir), chat=ChatFormat(system="")
    )


def _sample(tmp_path, answer="B", question="Which one?"):
    from PIL import Image

    path = tmp_path / "im.png"
    Image.new("RGB", (64, 64), (200, 10, 10)).save(path)
    return Sample(
        id="s1",
        task="t",
        turns=[(question, answer)],
        references=[answer],
        metric="exact",
        media={"image": str(path)},
    )


def test_labels_cover_exactly_the_answer_and_eos(micro_backbone_dirs, tmp_path):
    backbone = _backbone(micro_backbone_dirs)
    collate = Collator(backbone)
    sample = _sample(tmp_path, answer="blue circle")
    batch = collate([sample])
    tok = backbone.tokenizer
    kept = batch.labels[0][batch.labels[0] != IGNORE].tolist()
    assert kept[-1] == tok.eos_token_id
    assert tok.decode(kept[:-1]) == " blue circle"
    # Image slots: exactly num_image_tokens, all masked out of the loss.
    slots = batch.input_ids[0] == backbone.image_token_id
    assert int(slots.sum()) == backbone.num_image_tokens
    assert bool((batch.labels[0][slots] == IGNORE).all())
    side = backbone.model.config.vision_config.image_size  # the tower's input, resized to
    assert batch.pixel_values.shape == (1, 3, side, side)
    text = tok.decode(batch.input_ids[0][~slots])
    assert text.startswith("<s>USER: \nWhich one? ASSISTANT: blue circle</s>")


def test_generation_batch_is_left_padded_prompt_only(micro_backbone_dirs, tmp_path):
    backbone = _backbone(micro_backbone_dirs)
    collate = Collator(backbone)
    short, long = (
        _sample(tmp_path, question="Hi?"),
        _sample(tmp_path, question="A much longer question here?"),
    )
    batch = collate([short, long], with_answer=False)
    assert batch.labels is None
    mask = batch.attention_mask
    assert mask[0, 0] == 0 and mask[0, -1] == 1 and bool(mask[1].all())
    # The prompt ends with the assistant tag: nothing of the answer leaks into it.
    text = backbone.tokenizer.decode(batch.input_ids[1][mask[1].bool()], skip_special_tokens=True)
    assert text.endswith("ASSISTANT:") and "B" not in text.split("ASSISTANT:")[-1]


def test_image_features_land_in_the_slots(micro_backbone_dirs, tmp_path):
    backbone = _backbone(micro_backbone_dirs)
    batch = Collator(backbone)([_sample(tmp_path)])
    with torch.no_grad():
        plain = backbone.input_embeddings(batch.input_ids)
        mixed = backbone.embed(batch.input_ids, batch.pixel_values)
    slots = batch.input_ids == backbone.image_token_id
    assert torch.equal(plain[~slots], mixed[~slots])
    assert not torch.allclose(plain[slots], mixed[slots])


def test_pixel_cache_is_bounded_by_bytes(micro_backbone_dirs, tmp_path):
    from PIL import Image

    llava_dir, clip_dir = micro_backbone_dirs
    config = BackboneConfig(pixel_cache_mb=0)  # keep nothing beyond the batch being built
    backbone = load_llava_dir(llava_dir, config, clip_dir=str(clip_dir), chat=ChatFormat(system=""))
    paths = []
    for i in range(5):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (64, 64), (i * 40, 0, 0)).save(path)
        paths.append(str(path))
    first = backbone.pixel_values(paths[:2])
    assert len(backbone._pixel_cache) == 2
    backbone.pixel_values(paths[2:])
    assert list(backbone._pixel_cache) == paths[2:]  # the oldest went first
    assert torch.equal(backbone.pixel_values(paths[:2]), first)  # reloaded, same values
    unbounded = load_llava_dir(
        llava_dir, BackboneConfig(), clip_dir=str(clip_dir), chat=ChatFormat(system="")
    )
    unbounded.pixel_values(paths)
    assert len(unbounded._pixel_cache) == 5


def test_max_length_defaults_to_llava_15_and_never_passes_the_lm_positions(
    micro_backbone_dirs, tmp_path
):
    """LLaVA-1.5 puts 576 image slots before the text, so the default budget is its 2048 tokens
    (512 used to cut image slots); a smaller LM (the tiny one has 512 positions) caps it."""
    backbone = _backbone(micro_backbone_dirs)
    assert BackboneConfig().max_length == 2048
    positions = backbone.model.config.text_config.max_position_embeddings
    assert positions < 2048
    assert Collator(backbone).max_length == positions
    assert Collator(backbone, max_length=40).max_length == 40
    # A sample longer than the cap keeps BOS, the header and every image slot, then its newest
    # tokens: the oldest text after the image is what is cut; the answer and EOS survive.
    long = _sample(tmp_path, answer="red", question="word " * 800)
    full, _ = Collator(backbone, max_length=10_000).encode(long, with_answer=True)
    ids, labels = Collator(backbone).encode(long, with_answer=True)
    slots = backbone.num_image_tokens
    start = full.index(backbone.image_token_id)
    assert len(ids) == positions and ids[-1] == backbone.tokenizer.eos_token_id
    assert ids[: start + slots] == full[: start + slots]
    assert ids.count(backbone.image_token_id) == slots
    assert ids[start + slots :] == full[len(full) - (positions - start - slots) :]
    assert len(labels) == len(ids)
    # Too small to hold the image slots: an error naming the sample and the field.
    with pytest.raises(ConfigError, match=r"sample s1 \(t\).*model\.backbone\.max_length 8"):
        Collator(backbone, max_length=8).encode(long, with_answer=True)
