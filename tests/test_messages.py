"""The command's messages speak the user's terms: flags, not Python parameters; the folder to pass."""

import importlib.util

import numpy as np
import pytest

import embedview
from embedview._common.errors import api_only, arg
from embedview._workflows.demo import DemoEncoder, make_cells_scene, write_demo_embeddings
from embedview.cli import _command_parser, _flag_of, build_parser, main

SMALL = DemoEncoder(n_channels=8, grid=16)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("messages")
    paths = {}
    for name, shape, tile_shape, zarr_format in [("image", (128, 160), None, 3), ("v2", (128, 160), None, 2),
                                                 ("stack", (3, 128, 160), None, 3),
                                                 ("tiled", (200, 260), (96, 128), 3)]:
        image, labels = make_cells_scene(shape)
        paths[name] = write_demo_embeddings(root / f"{name}.zarr", image, labels, tile_shape=tile_shape,
                                            halo=(16, 16) if tile_shape else None, encoder=SMALL,
                                            zarr_format=zarr_format)
    paths["tokens"] = root / "tokens.npy"
    np.save(paths["tokens"], np.random.default_rng(0).normal(size=(1 + 14 * 14, 8)).astype(np.float32))
    return paths


def _error(capsys, *argv):
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("embedview: error: ") and err.count("\n") == 1
    return err


def test_vit_geometry_messages_name_flags(files, tmp_path, capsys):
    err = _error(capsys, "render", files["tokens"], "-o", tmp_path / "x.png", "--patch-size", "16")
    assert "--image-size H,W" in err and "image_size" not in err and "open_features" not in err
    err = _error(capsys, "render", files["tokens"], "-o", tmp_path / "x.png", "--image-size", "300,400",
                 "--resize", "256", "--crop", "224,224", "--patch-size", "16")
    assert "--prefix-tokens 1" in err and "prefix_tokens" not in err


def test_component_messages_name_flags(files, tmp_path, capsys):
    err = _error(capsys, "render", files["image"], "-o", tmp_path / "x.png", "--rgb-components", "0,1,7")
    assert "--rgb-components 0,1,7 must name" in err and "rgb_components" not in err
    err = _error(capsys, "render", files["image"], "-o", tmp_path / "x.png", "--components", "99")
    assert "--components 99 is not possible" in err and "n_components" not in err


def test_device_message_names_the_flag(files, tmp_path, capsys):
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    err = _error(capsys, "render", files["image"], "-o", tmp_path / "x.png", "--device", "cuda")
    assert "--device cuda needs" in err and "device=" not in err


def test_scheduler_message_names_the_flag(files, tmp_path, capsys):
    argv = ["render", files["tokens"], "-o", tmp_path / "x.png", "--image-size", "224,224", "--patch-size", "16",
            "--prefix-tokens", "1", "--scheduler", "processes"]
    err = _error(capsys, *argv)
    assert "--scheduler" in err and "scheduler=" not in err


@pytest.mark.parametrize("name, inner", [("image", "features"), ("v2", "features"), ("tiled", "features"),
                                         ("tiled", "features/2")])
def test_inner_features_ask_for_the_container(files, tmp_path, capsys, name, inner):
    container = files[name]
    for command in (["render", container / inner, "-o", tmp_path / "x.png"], ["info", container / inner]):
        err = _error(capsys, *command)
        assert f"pass the container folder ({container})" in err and "damaged" not in err
    with pytest.raises(embedview.EmbedviewError, match="container folder"):
        embedview.open_source(str(container / inner))


def test_similarity_on_a_stack_names_the_slice(files, tmp_path, capsys):
    assert main(["similarity", str(files["stack"]), "--point", "60,80", "-o", str(tmp_path / "s.png")]) == 0
    assert "of slice 1 (the middle one" in capsys.readouterr().err
    assert main(["similarity", str(files["stack"]), "--point", "60,80", "--slice", "2",
                 "-o", str(tmp_path / "s2.png")]) == 0
    assert "of slice 2 (given by --slice)" in capsys.readouterr().err
    assert main(["similarity", str(files["stack"]), "--point", "0,60,80", "-o", str(tmp_path / "s3.png")]) == 0
    assert "pixel (0, 60, 80)," in capsys.readouterr().err  # the slice is in the point already


def test_the_api_keeps_parameter_names(files):
    with pytest.raises(embedview.EmbedviewError, match=r"rgb_components=\[0, 1, 7\]"):
        embedview.visualize(str(files["image"]), rgb_components=[0, 1, 7])


@pytest.mark.parametrize("message, api, cli", [
    (f"pass {arg('image_size', form='H,W')} of the image", "pass image_size=(H, W) of the image",
     "pass --image-size H,W of the image"),
    (f"use {arg('device', 'cpu')} (the numpy engine)", "use device='cpu' (the numpy engine)",
     "use --device cpu (the numpy engine)"),
    (f"pass {arg('nonfinite', 'omit')} to", "pass nonfinite='omit' to", "pass --omit-nonfinite to"),
    (f"or do not pass {arg('scheduler')}.", "or do not pass scheduler=.", "or do not pass --scheduler."),
    (f"give the slice as {arg('point', form='z,y,x')} or {arg('z')}.", "give the slice as point=(z, y, x) or z=.",
     "give the slice as --point z,y,x or --slice."),
    (f"{arg('rgb_components', [0, 1, 7])} must name", "rgb_components=[0, 1, 7] must name",
     "--rgb-components 0,1,7 must name"),
    (f"pass {arg('patch_size')}{api_only(' to embedview.open_features')}.", "pass patch_size= to embedview.open_features.",
     "pass --patch-size."),
    ("/data/fit=3/image_size.zarr has 3 channels", "/data/fit=3/image_size.zarr has 3 channels",
     "/data/fit=3/image_size.zarr has 3 channels"),
])
def test_messages_name_parameters_once(message, api, cli):
    """One message, written once: the API reads parameters, the command its flags (from the parser's table)."""
    err = embedview.EmbedviewError(message)
    command = _command_parser(build_parser(), "similarity" if "point" in api else "render")
    assert str(err) == api
    assert err.render(lambda a: _flag_of(a, command)) == cli


def test_errors_know_their_parameter():
    import pickle

    err = embedview.EmbedviewError(f"{arg('pixel_size', 0)} must be positive.")
    assert err.param == "pixel_size" and str(err) == "pixel_size=0 must be positive."
    assert embedview.EmbedviewError("no parameter here.", param="fit").param == "fit"
    again = pickle.loads(pickle.dumps(err))  # Dask sends errors between processes
    assert again.param == "pixel_size" and str(again) == str(err)
    with pytest.raises(embedview.EmbedviewError) as caught:
        embedview.visualize(np.zeros((1, 8, 4, 4), np.float32), original_size=(16, 16), rgb_components=[0, 9])
    assert caught.value.param == "rgb_components"


def test_an_api_only_parameter_is_not_advised_by_the_command(files, tmp_path, capsys):
    """A flag the command does not have is not offered: `fit` has no --separate-bases."""
    rng = np.random.default_rng(0)
    for c in (6, 8):
        np.save(tmp_path / f"{c}.npy", rng.normal(size=(1, c, 16, 16)).astype(np.float32))
    err = _error(capsys, "fit", tmp_path / "6.npy", tmp_path / "8.npy", "-o", tmp_path / "b.npz",
                 "--image-size", "64,64", "--patch-size", "4")
    assert "on their own." in err and "PCA each" not in err and "separate" not in err


def test_a_bad_size_argument_is_not_called_damaged_metadata(files, capsys):
    """A size the user gave is the user's to fix; only sizes read from a file blame the file."""
    x = np.zeros((1, 8, 16, 16), np.float32)
    for bad in [(0, 10), "ab", (10, 10, 10)]:
        with pytest.raises(embedview.EmbedviewError, match="give the original image's height and width") as err:
            embedview.visualize(x, original_size=bad)
        assert "damaged" not in str(err.value)
    with pytest.raises(embedview.EmbedviewError, match="give the original image's height and width"):
        embedview.from_tokens(np.zeros((17, 8), np.float32), image_size=(0, 4), patch_size=4)
    assert main(["render", str(files["tokens"]), "-o", "x.png", "--image-size", "0,4", "--patch-size", "16"]) == 2
    err = capsys.readouterr().err
    assert "--image-size" in err and "give the original image's height and width" in err and "damaged" not in err


# ---------------------------------------------------------------------------------------------
# advice names only what exists where it is printed


def test_info_of_a_vit_file_takes_the_geometry_it_advises(files, capsys):
    """info advises --image-size/--patch-size for a ViT file: it takes them (as render does)."""
    err = _error(capsys, "info", files["tokens"])
    assert "--image-size" in err
    assert main(["info", str(files["tokens"]), "--image-size", "224,224", "--patch-size", "16",
                 "--prefix-tokens", "1"]) == 0
    out = capsys.readouterr().out
    assert "14 × 14 cells" in out and "patch size 16 × 16" in out
    info = embedview.describe(files["tokens"], dict(image_size=(224, 224), patch_size=16, prefix_tokens=1))
    assert info["cell_grid"] == [14, 14]


def test_tokens_without_prefix_tokens_say_what_does_not_match(tmp_path, capsys):
    """(B, N, C) tokens with a CLS token: the advice is --prefix-tokens, not layout='tokens' (no such flag)."""
    torch = pytest.importorskip("torch")
    torch.save(torch.zeros(2, 1 + 16, 8), tmp_path / "t.pt")
    err = _error(capsys, "render", tmp_path / "t.pt", "-o", tmp_path / "x.png", "--image-size", "64,64",
                 "--patch-size", "16")
    assert "--prefix-tokens 1" in err and "layout" not in err


def test_api_mistakes_point_to_what_to_do():
    tokens = np.zeros((2, 1 + 16, 8), np.float32)
    for call in (lambda: embedview.visualize(tokens), lambda: embedview.visualize(tokens, original_size=(64, 64))):
        with pytest.raises(embedview.EmbedviewError, match=r"shape \[2, 17, 8\].*embedview.from_tokens\(.*--prefix-tokens"):
            call()
    x = np.random.default_rng(0).normal(size=(1, 8, 16, 16)).astype(np.float32)
    with pytest.raises(embedview.EmbedviewError, match=r"a list of 2 is not one input; pass .* separate arguments"):
        embedview.PCA().fit([x, x], original_size=(64, 64))


def test_torch_tensors_are_accepted_by_the_api():
    """A tensor (CPU, float64, requiring grad) draws as its numpy array; meta and sparse ones are refused."""
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).normal(size=(1, 8, 16, 16)).astype(np.float32)
    ref = embedview.visualize(x, original_size=(64, 64))
    for tensor in (torch.from_numpy(x), torch.from_numpy(x).requires_grad_(), torch.from_numpy(x).double()):
        np.testing.assert_array_equal(embedview.visualize(tensor, original_size=(64, 64)).rgb, ref.rgb)
    for tensor, expected in ((torch.empty(1, 8, 16, 16, device="meta"), "meta tensor"),
                             (torch.from_numpy(x).to_sparse(), "sparse tensor")):
        with pytest.raises(embedview.EmbedviewError, match=expected):
            embedview.visualize(tensor, original_size=(64, 64))
