"""Encoder families beyond SAM (timm, Hugging Face, torch.hub) and layers, on random weights (never a download).

Each family's declaration comes from the model's own configuration; probes (patch embeddings set
to averaging, blocks made identities) check that every cell lies where the declared grid puts it,
for DINO-style (resize and centre crop) and fixed-square (resize to a square) inputs, with and
without prefix tokens, square and non-square, 2D, stack and tiled. Also the layout written
(micro_sam's vision-foundation-model fields, the layer) and read back.
"""

import numpy as np
import pytest

import embedview
from _probes import averaging, misplaced, probe_image

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

#: small timm configurations: (name, model kwargs with the pretrained configuration overlaid)
DINO_STYLE = ("vit_small_patch14_reg4_dinov2", dict(img_size=112, pretrained_cfg_overlay=dict(
    input_size=(3, 112, 112), crop_pct=0.875, crop_mode="center")))
FIXED_SQUARE = ("vit_base_patch16_siglip_224", dict(img_size=112, pretrained_cfg_overlay=dict(
    input_size=(3, 112, 112), crop_pct=1.0, crop_mode="squash")))


def timm_probe(name, layer=None, **kwargs):
    from embedview._encode.timm_family import timm_encoder

    torch.manual_seed(0)
    encoder = timm_encoder(name, pretrained=False, depth=2, embed_dim=4, num_heads=1, layer=layer, **kwargs)
    vit = encoder.module.model
    averaging(vit.patch_embed.proj)
    vit.blocks = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Identity())
    vit.norm = torch.nn.Identity()
    with torch.no_grad():
        vit.pos_embed.zero_()
    return encoder


@pytest.mark.parametrize("shape", [(200, 256), (240, 240)])
@pytest.mark.parametrize("style", [DINO_STYLE, FIXED_SQUARE], ids=["dino-style", "fixed-square"])
@pytest.mark.parametrize("layout", ["2d", "stack", "tiled"])
def test_a_timm_probe_finds_every_cell_where_its_declared_grid_puts_it(shape, style, layout):
    name, kwargs = style
    encoder = timm_probe(name, **kwargs)
    image = probe_image(shape, n_slices=2 if layout == "stack" else None)
    tiles = dict(tile_shape=(128, 128), halo=(16, 16)) if layout == "tiled" else {}
    src = embedview.encode(image, encoder, device="cpu", **tiles)
    bad, checked = misplaced(src, encoder)
    assert checked > 0 and bad == 0


def test_timm_declarations_follow_the_pretrained_configuration():
    from embedview._encode.timm_family import timm_encoder

    dino = timm_probe(DINO_STYLE[0], **DINO_STYLE[1])
    assert dino.prefix_tokens == 5 and dino.patch_size == (14, 14)  # the class token and 4 registers
    assert dino.preprocess.describe() == {"resize": 128, "resize_mode": "shortest", "crop": [112, 112],
                                                "crop_offset": None, "rounding": "floor", "pad": None,
                                                "pad_side": "end", "interpolation": "bicubic"}
    siglip = timm_probe(FIXED_SQUARE[0], **FIXED_SQUARE[1])
    assert siglip.prefix_tokens == 0 and siglip.preprocess.resize == (112, 112) and siglip.mean == (0.5, 0.5, 0.5)
    sam = timm_encoder("samvit_base_patch16", pretrained=False, depth=1, embed_dim=8, num_heads=1, img_size=64,
                       global_attn_indexes=(), pretrained_cfg_overlay=dict(input_size=(3, 64, 64)))
    assert (sam.preprocess.resize, sam.preprocess.resize_mode, sam.preprocess.pad) == (64, "longest", (64, 64))
    assert sam.input_size((40, 64)) == (40, 64) and sam.preprocess.input_size((40, 64)) == (64, 64)  # SAM's rule
    out = sam.forward([sam.prepare(np.zeros((40, 64, 3), np.uint8))])
    assert out.shape == (1, 256, 4, 4)  # the neck's map


def test_a_timm_layer_is_that_blocks_output_recorded_in_the_file(tmp_path):
    encoder = timm_probe(DINO_STYLE[0], layer=-1, **DINO_STYLE[1])
    assert encoder.layer == 1 and encoder.prefix_tokens == 0  # forward_intermediates drops the prefix tokens
    image = probe_image((200, 256))
    src = embedview.encode(image, encoder, device="cpu", output=tmp_path / "e.zarr")
    assert misplaced(src, encoder)[0] == 0
    back = embedview.open_source(str(tmp_path / "e.zarr"))
    attrs = back.metadata
    assert attrs["layer"] == 1 and attrs["vfm_mode"] == "2d" and attrs["patch_size"] == 14 and attrs["embed_dim"] == 4
    assert back.pieces()[0].grid == src.pieces()[0].grid  # the exact geometry read back
    from embedview._workflows.info import describe, format_info

    assert describe(str(tmp_path / "e.zarr"))["layer"] == 1
    assert "block 1" in format_info(describe(str(tmp_path / "e.zarr")))


def test_vfm_modes_of_stacks_and_tiles_read_back(tmp_path):
    encoder = timm_probe(FIXED_SQUARE[0], **FIXED_SQUARE[1])
    image = probe_image((200, 256), n_slices=2)
    src = embedview.encode(image, encoder, ndim=3, tile_shape=(128, 128), halo=(8, 8), device="cpu",
                           output=tmp_path / "t.zarr")
    back = embedview.open_source(str(tmp_path / "t.zarr"))
    assert back.metadata["vfm_mode"] == "tiled-3d" and back.metadata["layer"] is None
    assert [p.grid for p in back.pieces()] == [p.grid for p in src.pieces()]


def test_timm_pretrained_weights_load_offline_from_the_hugging_face_cache(tmp_path, monkeypatch):
    """A cache laid out as huggingface_hub lays it out (refs/main, snapshots/<commit>/model.safetensors)."""
    from huggingface_hub import constants
    from safetensors.torch import save_file

    from embedview._encode.timm_family import timm_encoder

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    name = "vit_tiny_patch16_224.augreg_in21k_ft_in1k"
    repo = tmp_path / f"models--timm--{name}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    torch.manual_seed(1)
    state = {k: torch.randn_like(v) for k, v in timm.create_model("vit_tiny_patch16_224").state_dict().items()}
    save_file(state, str(repo / "snapshots" / ("0" * 40) / "model.safetensors"))
    encoder = timm_encoder(name)
    torch.testing.assert_close(encoder.module.model.patch_embed.proj.weight, state["patch_embed.proj.weight"])
    assert encoder.name == f"timm:{name}" and encoder.prefix_tokens == 1


def test_a_timm_checkpoint_loads_and_a_wrong_one_is_named(tmp_path):
    from embedview._encode.timm_family import timm_encoder

    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=1, embed_dim=8, num_heads=1)
    from safetensors.torch import save_file

    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": model.state_dict()}, tmp_path / "w.pt")
    for path in ("w.safetensors", "w.pt"):
        enc = timm_encoder("vit_tiny_patch16_224", checkpoint=tmp_path / path, depth=1, embed_dim=8, num_heads=1)
        torch.testing.assert_close(enc.module.model.patch_embed.proj.weight, model.patch_embed.proj.weight)
    with pytest.raises(embedview.EmbedviewError, match="do not fit timm's vit_tiny_patch16_224"):
        timm_encoder("vit_tiny_patch16_224", checkpoint=tmp_path / "w.pt", depth=2, embed_dim=8, num_heads=1)


# -- Hugging Face -----------------------------------------------------------------------------------

transformers = pytest.importorskip("transformers")


def hf_probe(tmp_path, registers=0, layer=None, processor=None):
    """A tiny DINOv2 (with registers) saved as a Hub folder, its patch embedding averaging, its blocks identities."""
    from embedview._encode.hf_family import hf_encoder

    config = dict(hidden_size=4, num_hidden_layers=2, num_attention_heads=1, intermediate_size=8, patch_size=14,
                  image_size=112, layerscale_value=0.0)
    if registers:
        model = transformers.Dinov2WithRegistersModel(transformers.Dinov2WithRegistersConfig(
            num_register_tokens=registers, **config))
    else:
        model = transformers.Dinov2Model(transformers.Dinov2Config(**config))
    averaging(model.embeddings.patch_embeddings.projection)
    with torch.no_grad():
        model.embeddings.position_embeddings.zero_()
        model.layernorm.weight.fill_(1.0)
    folder = tmp_path / f"dinov2-{registers}"
    model.save_pretrained(folder)
    (processor or transformers.BitImageProcessor(size={"shortest_edge": 128}, crop_size={"height": 112, "width": 112},
                                                 image_mean=[0.485, 0.456, 0.406],
                                                 image_std=[0.229, 0.224, 0.225])).save_pretrained(folder)
    encoder = hf_encoder(str(folder), layer=layer)
    encoder.module.model.layernorm = torch.nn.Identity()  # the final norm would mix the probe's channels
    return encoder


@pytest.mark.parametrize("registers", [0, 4])
@pytest.mark.parametrize("shape", [(200, 256), (240, 240)])
def test_a_hugging_face_probe_finds_every_cell(tmp_path, registers, shape):
    encoder = hf_probe(tmp_path, registers)
    assert encoder.prefix_tokens == 1 + registers and encoder.preprocess.crop == (112, 112)
    for tiles in ({}, dict(tile_shape=(128, 128), halo=(16, 16))):
        src = embedview.encode(probe_image(shape), encoder, device="cpu", **tiles)
        bad, checked = misplaced(src, encoder)
        assert checked > 0 and bad == 0


def test_a_hub_id_loads_offline_from_the_hugging_face_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from embedview._encode.hf_family import hf_encoder

    folder = hf_probe(tmp_path, 0).module.model.name_or_path  # a saved tiny DINOv2
    repo = tmp_path / "cache" / "models--someone--tiny-dinov2"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("1" * 40)
    import shutil

    shutil.copytree(folder, repo / "snapshots" / ("1" * 40))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    encoder = hf_encoder("someone/tiny-dinov2")
    assert encoder.name == "hf:someone/tiny-dinov2" and encoder.prefix_tokens == 1 and encoder.patch_size == (14, 14)


def test_a_hugging_face_fixed_square_and_a_layer(tmp_path):
    square = transformers.BitImageProcessor(size={"height": 112, "width": 112}, do_center_crop=False,
                                            image_mean=[0.5] * 3, image_std=[0.5] * 3)
    encoder = hf_probe(tmp_path, 4, layer=0, processor=square)
    assert encoder.preprocess.resize == (112, 112) and encoder.layer == 0 and encoder.mean == (0.5, 0.5, 0.5)
    src = embedview.encode(probe_image((200, 256), n_slices=2), encoder, device="cpu", output=tmp_path / "h.zarr")
    assert misplaced(src, encoder)[0] == 0
    assert embedview.open_source(str(tmp_path / "h.zarr")).metadata["layer"] == 0


def test_dinov3_counts_its_registers_and_gives_a_layer():
    from embedview._encode.hf_family import hf_model_encoder

    model = transformers.DINOv3ViTModel(transformers.DINOv3ViTConfig(
        hidden_size=8, num_hidden_layers=2, num_attention_heads=1, intermediate_size=8, patch_size=16, image_size=64,
        num_register_tokens=4))
    processor = transformers.DINOv3ViTImageProcessor(size={"height": 64, "width": 64})
    for layer in (None, -2):
        encoder = hf_model_encoder(model, processor, name="d", layer=layer)
        assert encoder.prefix_tokens == 5 and encoder.preprocess.resize == (64, 64) and encoder.layer == (layer and 0)
        assert encoder.forward([encoder.prepare(np.zeros((50, 70), np.uint8))]).shape == (1, 8, 4, 4)


def test_siglip_has_no_prefix_tokens():
    from embedview._encode.hf_family import hf_model_encoder

    model = transformers.SiglipVisionModel(transformers.SiglipVisionConfig(
        hidden_size=8, num_hidden_layers=2, num_attention_heads=1, intermediate_size=8, patch_size=16, image_size=64))
    encoder = hf_model_encoder(model, transformers.SiglipImageProcessor(size={"height": 64, "width": 64}), name="s")
    assert encoder.prefix_tokens == 0 and encoder.preprocess.resize == (64, 64)
    assert encoder.forward([encoder.prepare(np.zeros((50, 70), np.uint8))]).shape == (1, 8, 4, 4)


# -- torch.hub ---------------------------------------------------------------------------------------

HUBCONF = '''
import torch

class Backbone(torch.nn.Module):
    """DINOv2's interface: patch tokens after the final norm, and get_intermediate_layers."""
    patch_size = 14

    def __init__(self):
        super().__init__()
        self.blocks = torch.nn.ModuleList([torch.nn.Identity(), torch.nn.Identity()])
        self.pool = torch.nn.AvgPool2d(14)

    def forward_features(self, x):
        return {"x_norm_patchtokens": self.pool(x).flatten(2).transpose(1, 2), "x_norm_clstoken": x[:, 0, 0]}

    def get_intermediate_layers(self, x, n, reshape=False):
        return [self.pool(x) for _ in n]

def probe(pretrained=False):
    if pretrained:
        torch.hub.load_state_dict_from_url("https://example.invalid/probe_weights.pth")
    return Backbone()
'''


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    folder = tmp_path / "hub" / "someone_probe_main"
    folder.mkdir(parents=True)
    (folder / "hubconf.py").write_text(HUBCONF)
    return tmp_path / "hub"


def test_a_hub_probe_finds_every_cell(hub):
    from embedview._encode.hub_family import hub_encoder

    for layer in (None, -1):
        encoder = hub_encoder("someone/probe:probe", layer=layer)
        assert encoder.preprocess.resize == 256 and encoder.preprocess.crop == (224, 224)
        for shape in ((200, 256), (240, 240)):
            src = embedview.encode(probe_image(shape), encoder, device="cpu")
            bad, checked = misplaced(src, encoder)
            assert checked > 0 and bad == 0


def test_hub_weights_come_only_from_the_hub_checkpoints(hub):
    from embedview._encode.hub_family import hub_encoder

    with pytest.raises(embedview.EmbedviewError, match=r"probe_weights.pth are not in torch.hub's checkpoints"):
        hub_encoder("someone/probe:probe", pretrained=True)
    (hub / "checkpoints").mkdir()
    torch.save({"w": torch.zeros(1)}, hub / "checkpoints" / "probe_weights.pth")
    assert hub_encoder("someone/probe:probe", pretrained=True).patch_size == (14, 14)


def test_the_command_encodes_a_layer_and_info_reads_it_back(hub, tmp_path, capsys):
    from _cli import run_ok

    np.save(tmp_path / "image.npy", probe_image((200, 256)))
    run_ok(capsys, "encode", tmp_path / "image.npy", "-o", tmp_path / "e.zarr", "--model", "hub:someone/probe:probe",
           "--layer", "-1", "-q")
    import json

    info = json.loads(run_ok(capsys, "info", tmp_path / "e.zarr", "--json").out)
    assert info["layer"] == 1 and info["vfm_mode"] == "2d" and info["patch_size"] == 14
    run_ok(capsys, "render", tmp_path / "image.npy", "-o", tmp_path / "pca.png", "--model", "hub:someone/probe:probe",
           "--layer", "0", "-q")
    assert (tmp_path / "pca.png").is_file()


# -- SAM's blocks ------------------------------------------------------------------------------------

def test_a_sam_layer_is_a_blocks_output_before_the_neck(tmp_path):
    pytest.importorskip("segment_anything")
    from segment_anything.modeling import ImageEncoderViT

    from embedview._encode.layers import sam_block
    from embedview._encode.sam import PIXEL_MEAN, PIXEL_STD, sam_preprocess

    vit = ImageEncoderViT(img_size=1024, patch_size=16, embed_dim=4, depth=3, num_heads=1, out_chans=8, window_size=4)
    averaging(vit.patch_embed.proj)
    vit.blocks = torch.nn.ModuleList([torch.nn.Identity()] * 3)
    with torch.no_grad():
        vit.pos_embed.zero_()
    encoder = embedview.Encoder(vit, patch_size=16, preprocess=sam_preprocess(), mean=PIXEL_MEAN, std=PIXEL_STD,
                                pixel_range=255, name="vit_b", model_type="vit_b")
    encoder = sam_block(encoder, -2)
    assert encoder.layer == 1 and encoder.model_type == "vit_b (block 1)"  # micro_sam never reuses it as vit_b's
    src = embedview.encode(probe_image((200, 256)), encoder, device="cpu", output=tmp_path / "s.zarr")
    assert src.n_channels == 4 and misplaced(src, encoder)[0] == 0
    attrs = embedview.open_source(str(tmp_path / "s.zarr")).metadata
    assert attrs["layer"] == 1 and attrs["vfm_mode"] == "2d" and attrs["patch_size"] == 16
