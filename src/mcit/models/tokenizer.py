"""The tiny backbone's tokenizer: a byte-level BPE trained by mcit on its own generic corpus.

Byte-level BPE decodes exactly what it encodes (boxes such as "[0.12, 0.40, 0.55, 0.91]" come
back character for character), and a vocabulary trained on the corpus keeps the common words
of the instructions to one token each, so sequences stay short on a CPU.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
# One placeholder per modality; the collator expands it into as many slots as the encoder
# produces features (LLaVA-1.5: 576 for CLIP-L/336).
MEDIA_TOKENS = {"image": "<image>", "audio": "<audio>", "video": "<video>"}
# EOS is deliberately not id 2: transformers' CLIP text tower treats eos_token_id == 2 as a
# legacy config and pools at the largest token id instead of at EOS.
SPECIAL_TOKENS = [PAD, UNK, BOS, EOS, *MEDIA_TOKENS.values()]


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on `texts` and wrap it as a transformers fast tokenizer.

    Training is deterministic for the same texts in the same order.
    """
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(list(texts), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=list(MEDIA_TOKENS.values()),
        padding_side="left",  # decoder-only generation pads on the left (deterministic evaluation)
        model_max_length=512,
    )
    return tokenizer
