"""``layer=N`` for the SAM family: the output of block ``N`` of SAM's ViT, before the neck.

SAM's image encoder (segment_anything's ``ImageEncoderViT``) is a patch embedding, position
embedding, blocks, then the neck (convolutions to 256 channels); the default features are the
neck's. Block ``N``'s output (``(B, 64, 64, C)``, C = 768/1024/1280) lies on the same 16-pixel grid.
The container records the layer and a ``model_type`` of ``"vit_b (block N)"``, so micro_sam never
mistakes the file for its own embeddings of ``vit_b``. MobileSAM's TinyViT (``vit_t``) changes its
grid from stage to stage and is refused.
"""

from __future__ import annotations

from .._common.errors import EmbedviewError, arg
from .encoder import Encoder
from .families import block_index, feature_module


def sam_block(encoder: Encoder, layer) -> Encoder:
    """``encoder`` (a SAM-family image encoder) giving block ``layer``'s output instead of the neck's."""
    vit = encoder.module
    if not hasattr(vit, "blocks") or not hasattr(vit, "neck") or not hasattr(vit, "patch_embed"):
        raise EmbedviewError(f"{arg('layer', layer)}: {encoder.name}'s image encoder ({type(vit).__name__}) has no "
                             "ViT blocks on one grid (MobileSAM's TinyViT changes its grid); leave --layer out.")
    index = block_index(layer, len(vit.blocks), encoder.name)
    encoder.module = _blocks(vit, index)
    encoder.layer = index
    encoder.model_type = f"{encoder.model_type} (block {index})"
    return encoder


def _blocks(vit, index):
    def forward(vit, x):
        x = vit.patch_embed(x)
        if vit.pos_embed is not None:
            x = x + vit.pos_embed
        for block in vit.blocks[:index + 1]:
            x = block(x)
        return x.permute(0, 3, 1, 2)

    return feature_module(vit, forward)
