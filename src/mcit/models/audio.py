"""The audio encoder of a multimodal backbone: a Whisper encoder from a local Hugging Face
directory, with its feature extractor (log-mel spectrogram).

Whisper's encoder takes a fixed window of log-mel frames (30 s for OpenAI's checkpoints, 2 s for
the tiny base's) and halves the time axis in its second convolution. A clip shorter than the
window is padded with silence; only the encoder frames that cover the clip itself are kept and
average-pooled in time to a fixed number of tokens, so a one-second clip in a 30-second window
is not drowned in padding. A clip longer than the window is cut to it (warned once), as
Whisper itself does.

Any directory whose `config.json` is a Whisper model (`WhisperModel`,
`WhisperForConditionalGeneration`: the decoder is dropped) or a bare `WhisperEncoder` loads;
the tiny base's encoder is a `WhisperEncoder` pre-trained by mcit's recipe
(`mcit.pretrain.audio`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from mcit.errors import BackboneError
from mcit.files import read_json

# What every clip is decoded to before the spectrogram (Whisper's rate).
SAMPLE_RATE = 16_000


def tiny_whisper_config(
    mels: int, hidden: int, layers: int, heads: int, seconds: int
) -> WhisperConfig:
    """A Whisper config whose encoder reads `seconds` of audio as `mels` log-mel bins (hop
    10 ms: 100 frames a second, 50 encoder positions a second)."""
    return WhisperConfig(
        num_mel_bins=mels,
        d_model=hidden,
        encoder_layers=layers,
        encoder_attention_heads=heads,
        encoder_ffn_dim=4 * hidden,
        decoder_layers=1,
        decoder_attention_heads=heads,
        decoder_ffn_dim=4 * hidden,
        max_source_positions=50 * seconds,
        vocab_size=8,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )


def tiny_feature_extractor(mels: int, seconds: int) -> WhisperFeatureExtractor:
    return WhisperFeatureExtractor(
        feature_size=mels,
        sampling_rate=SAMPLE_RATE,
        hop_length=160,
        chunk_length=seconds,
        n_fft=400,
        return_attention_mask=True,
    )


class AudioEncoder(nn.Module):
    """Clips → `tokens` feature vectors each ([B, tokens, width]), before the projection."""

    def __init__(self, encoder: WhisperEncoder, extractor: WhisperFeatureExtractor, tokens: int):
        super().__init__()
        self.encoder = encoder
        self.extractor = extractor
        self.tokens = tokens
        self._warned_long = False

    @property
    def width(self) -> int:
        return self.encoder.config.d_model

    @property
    def window_samples(self) -> int:
        return int(self.extractor.n_samples)

    def log_mel(self, clips: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """The spectrograms of `clips` (float32 mono at 16 kHz) and how many frames of each
        are the clip rather than padding: ([B, mels, window frames], [B])."""
        if any(len(c) > self.window_samples for c in clips) and not self._warned_long:
            warnings.warn(
                f"an audio clip is longer than the encoder's window "
                f"({self.window_samples / SAMPLE_RATE:g} s): it is cut to the window "
                "(warned once per run)",
                stacklevel=2,
            )
            self._warned_long = True
        out = self.extractor(
            [c[: self.window_samples] for c in clips],
            sampling_rate=SAMPLE_RATE,
            return_tensors="pt",
            return_attention_mask=True,
            padding="max_length",
        )
        frames = out["attention_mask"].sum(-1).clamp(min=1)
        return out["input_features"].float(), frames

    def forward(self, features: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(features.to(self.encoder.dtype)).last_hidden_state
        # The second convolution has stride 2: encoder position j covers mel frames 2j, 2j + 1.
        covered = ((frames + 1) // 2).clamp(min=1, max=hidden.shape[1])
        rows = [
            nn.functional.adaptive_avg_pool1d(h[: int(n)].T.unsqueeze(0), self.tokens)[0].T
            for h, n in zip(hidden, covered.tolist(), strict=True)
        ]
        return torch.stack(rows)


def load_audio_encoder(path: str | Path, tokens: int) -> AudioEncoder:
    """The Whisper encoder and feature extractor in the local directory `path`."""
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise BackboneError(f"{path}: not a Hugging Face model directory (no config.json)")
    config = read_json(config_file, BackboneError)
    if config.get("model_type") != "whisper":
        raise BackboneError(
            f"{config_file}: model_type is {config.get('model_type')!r}; the audio encoder "
            "must be a Whisper model (WhisperModel, WhisperForConditionalGeneration or "
            "WhisperEncoder)"
        )
    try:
        if "WhisperEncoder" in (config.get("architectures") or []):
            encoder = WhisperEncoder.from_pretrained(path)
        else:
            encoder = WhisperModel.from_pretrained(path).get_encoder()
        extractor = WhisperFeatureExtractor.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise BackboneError(f"{path}: cannot load a Whisper encoder from it: {err}") from err
    if extractor.sampling_rate != SAMPLE_RATE:
        raise BackboneError(
            f"{path}: the feature extractor expects {extractor.sampling_rate} Hz; mcit decodes "
            f"audio at {SAMPLE_RATE} Hz"
        )
    encoder.eval()
    return AudioEncoder(encoder, extractor, tokens)
