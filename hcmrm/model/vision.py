"""The vision tower: a timm VisionTransformer cut to its first `depth` blocks, never downloaded.

`base` builds timm's `vit_base_patch32_224` with depth=6 (real weights come from a local file, see
hcmrm/pretrained.py); `tiny` and `small` build a plain timm ViT of their own small sizes.
"""

from __future__ import annotations

import timm
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from hcmrm.model.config import VisionConfig


def build_vision_tower(config: VisionConfig) -> VisionTransformer:
    common = dict(img_size=config.image_size, depth=config.depth, num_classes=0)
    if config.timm_model:
        tower = timm.create_model(config.timm_model, pretrained=False, **common)
        if tower.patch_embed.patch_size[0] != config.patch_size or tower.embed_dim != config.width:
            raise ValueError(
                f"{config.timm_model} has patch {tower.patch_embed.patch_size[0]} and width {tower.embed_dim},"
                f" the config says {config.patch_size} and {config.width}"
            )
        return tower
    return VisionTransformer(patch_size=config.patch_size, embed_dim=config.width, num_heads=config.heads,
                             mlp_ratio=config.mlp_ratio, **common)


def frame_tokens(tower: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] -> [N, 1 + patches, width]: the CLS token first, after the tower's final norm."""
    return tower.forward_features(images)
