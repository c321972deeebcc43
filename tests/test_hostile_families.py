"""Bad input for the encoder families beyond SAM: one sentence, exit 2, nothing written, never a download.

The caches are pointed at empty folders, so a missing model is refused at once (no network is
asked); each case takes well under a second.
"""

import sys

import numpy as np
import pytest

import embedview
from _cli import run_fails
from embedview._common.errors import EmbedviewError

torch = pytest.importorskip("torch")


@pytest.fixture
def folder(tmp_path, monkeypatch):
    np.save(tmp_path / "grey.npy", np.zeros((60, 80), np.uint8))
    caches = tmp_path.parent / f"{tmp_path.name}-caches"
    monkeypatch.setenv("TORCH_HOME", str(caches / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    try:
        from huggingface_hub import constants

        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(caches / "hf"))
    except ImportError:
        pass
    return tmp_path


def encode_fails(capsys, folder, model, *extra):
    return run_fails(capsys, folder, "encode", folder / "grey.npy", "-o", folder / "emb.zarr", "--model", model, *extra)


def test_an_unknown_model_names_the_families(folder, capsys):
    for model in ("resnet50", "foo:bar"):
        err = encode_fails(capsys, folder, model)
        assert "is unknown" in err and "timm:NAME, hf:ORG/NAME, hub:OWNER/REPO:ENTRY" in err and "vit_b_lm" in err
    err = encode_fails(capsys, folder, "timm:")
    assert "names no model after 'timm:'" in err


def test_an_unknown_timm_name(folder, capsys):
    pytest.importorskip("timm")
    err = encode_fails(capsys, folder, "timm:not_a_model_at_all")
    assert "is not a model timm knows" in err and "timm.list_models" in err


def test_a_timm_model_that_is_no_vit(folder, capsys):
    pytest.importorskip("timm")
    from embedview._encode.timm_family import timm_encoder

    with pytest.raises(EmbedviewError, match=r"\(ResNet\) is not a ViT on one patch grid"):
        timm_encoder("resnet10t", pretrained=False)


def test_missing_timm_weights_say_where_they_are_looked_for(folder, capsys):
    pytest.importorskip("timm")
    err = encode_fails(capsys, folder, "timm:vit_small_patch14_dinov2.lvd142m")
    assert "models--timm--vit_small_patch14_dinov2.lvd142m" in err and "-caches" in err
    assert "never downloads" in err and "--checkpoint FILE" in err


def test_missing_hugging_face_model_says_where_it_is_looked_for(folder, capsys):
    pytest.importorskip("transformers")
    err = encode_fails(capsys, folder, "hf:facebook/dinov2-small")
    assert "not in the local Hugging Face cache" in err and "models--facebook--dinov2-small" in err
    assert "never downloads" in err


def test_a_hub_repository_not_in_the_cache_names_the_folder(folder, capsys):
    err = encode_fails(capsys, folder, "hub:facebookresearch/dinov2:dinov2_vits14")
    assert "not in torch.hub's cache" in err and "facebookresearch_dinov2_main" in err and "-caches" in err
    err = encode_fails(capsys, folder, "hub:dinov2_vits14")
    assert "is not hub:OWNER/REPO:ENTRY" in err


def test_a_checkpoint_for_a_family_that_reads_its_own_cache(folder, capsys):
    (folder / "w.pt").write_bytes(b"")
    err = encode_fails(capsys, folder, "hf:facebook/dinov2-small", "--checkpoint", folder / "w.pt")
    assert "--checkpoint is for SAM-family and timm models" in err


def test_a_timm_checkpoint_that_is_no_state_dict(folder, capsys):
    pytest.importorskip("timm")
    torch.save([1, 2], folder / "list.pt")
    err = encode_fails(capsys, folder, "timm:vit_tiny_patch16_224", "--checkpoint", folder / "list.pt")
    assert "not a state dict of weights" in err


def test_a_layer_out_of_range_or_not_for_a_name(folder, capsys):
    pytest.importorskip("timm")
    from embedview._encode.families import block_index

    with pytest.raises(EmbedviewError, match=r"layer=12 is out of range: m has 12 blocks.*-12…11"):
        block_index(12, 12, "m")
    assert block_index(-12, 12, "m") == 0 and block_index(-1, 12, "m") == 11
    encoder = embedview.Encoder(torch.nn.Conv2d(3, 2, 16, stride=16), patch_size=16)
    with pytest.raises(EmbedviewError, match="layer=1 is for a model given by name"):
        embedview.encode(folder / "grey.npy", encoder, layer=1)


def test_a_layer_without_a_model(folder, capsys):
    np.save(folder / "emb.npy", np.zeros((1, 4, 8, 8), np.float32))
    err = run_fails(capsys, folder, "render", folder / "emb.npy", "-o", folder / "pca.png", "--layer", "2")
    assert "--layer 2 chooses a block of the model" in err and "--model NAME" in err


def test_vit_t_has_no_layers():
    from embedview._encode.layers import sam_block

    encoder = embedview.Encoder(torch.nn.Conv2d(3, 2, 16, stride=16), patch_size=16, name="vit_t")
    with pytest.raises(EmbedviewError, match="no ViT blocks on one grid"):
        sam_block(encoder, 1)


@pytest.mark.parametrize("model, module, extra", [("timm:vit_tiny_patch16_224", "timm", "timm"),
                                                 ("hf:facebook/dinov2-small", "transformers", "transformers")])
def test_a_missing_library_names_the_extra(folder, monkeypatch, model, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    with pytest.raises(EmbedviewError, match=rf"models need {module}, which is not installed.*embedview\[{extra}\]"):
        embedview.encode(folder / "grey.npy", model, output=folder / "emb.zarr")
    assert not (folder / "emb.zarr").exists()
