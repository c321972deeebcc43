"""The exploring commands: `fit`, `render --basis/--mask/--foreground/--clusters`, several inputs,
`similarity`, ViT feature files and devices; each a clean exit 2 on bad input."""

import json
from pathlib import Path

import numpy as np
import pytest

import embedview
from _cli import run_fails, run_ok
from embedview._workflows.demo import DemoEncoder, make_demo_scene, write_demo_embeddings

SMALL = DemoEncoder(n_channels=16, grid=16)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("explore")
    paths = {}
    for name, shape, seed in (("a", (120, 180), 0), ("b", (120, 180), 1), ("stack", (3, 90, 120), 2)):
        image, labels = make_demo_scene(shape, seed=seed)
        np.save(root / f"{name}_image.npy", image)
        paths[name] = Path(write_demo_embeddings(root / f"{name}.zarr", image, labels, encoder=SMALL))
    paths["other_model"] = Path(write_demo_embeddings(root / "other.zarr", *make_demo_scene((120, 180)),
                                                      encoder=DemoEncoder(n_channels=8, grid=16)))
    tokens = np.random.default_rng(0).normal(size=(1 + 14 * 14, 12)).astype(np.float32)
    np.save(root / "tokens.npy", tokens)
    paths["tokens"] = root / "tokens.npy"
    mask = np.zeros((120, 180), np.uint8)
    mask[:60] = 1
    np.save(root / "mask.npy", mask)
    paths["mask"] = root / "mask.npy"
    return root, paths


def test_fit_then_render_with_the_basis(tmp_path, capsys, data):
    _, paths = data
    err = run_ok(capsys, "fit", paths["a"], paths["b"], "-o", tmp_path / "basis.npz").err
    assert "basis.npz" in err and "--basis" in err
    from embedview._model.basis_file import load_basis

    basis, meta = load_basis(tmp_path / "basis.npz")
    assert meta["fitted_on"] == [str(paths["a"]), str(paths["b"])] and meta["n_channels"] == 16
    run_ok(capsys, "render", paths["b"], "-o", tmp_path / "b.png", "--basis", tmp_path / "basis.npz", "-q")
    expected = embedview.PCA().fit(paths["a"], paths["b"]).transform(paths["b"])
    np.testing.assert_array_equal(embedview.read_image(tmp_path / "b.png"), expected.rgb)
    err = run_fails(capsys, None, "render", paths["other_model"], "-o", tmp_path / "o.png", "--basis", tmp_path / "basis.npz")
    assert "16 channels" in err and "8" in err
    run_fails(capsys, None, "render", paths["a"], "-o", tmp_path / "x.png", "--basis", tmp_path / "basis.npz", "--components", "5")
    run_fails(capsys, None, "render", paths["a"], "-o", tmp_path / "x.png", "--basis", tmp_path / "missing.npz")
    run_fails(capsys, None, "fit", paths["a"], "-o", tmp_path / "basis.json")
    assert not (tmp_path / "x.png").exists()


def test_several_inputs_share_one_basis(tmp_path, capsys, data):
    _, paths = data
    run_ok(capsys, "render", paths["a"], paths["b"], "-o", tmp_path / "cmp", "-q")
    names = sorted(p.name for p in (tmp_path / "cmp").iterdir())
    assert names == ["a.png", "b.png", "side_by_side.png"]
    a, b = embedview.PCA().fit_transform(paths["a"], paths["b"])
    np.testing.assert_array_equal(embedview.read_image(tmp_path / "cmp" / "b.png"), b.rgb)
    side = embedview.read_image(tmp_path / "cmp" / "side_by_side.png")
    assert side.shape[1] > 2 * 180
    # Different models: each its own basis (automatic when the channel counts differ).
    err = run_ok(capsys, "render", paths["a"], paths["other_model"], "-o", tmp_path / "mixed").err
    assert "each gets its own basis" in err and (tmp_path / "mixed" / "side_by_side.png").exists()
    np.testing.assert_array_equal(embedview.read_image(tmp_path / "mixed" / "other.png"),
                                  embedview.visualize(paths["other_model"]).rgb)
    run_ok(capsys, "render", paths["a"], paths["b"], "-o", tmp_path / "same", "--separate-bases", "-q")
    np.testing.assert_array_equal(embedview.read_image(tmp_path / "same" / "b.png"), embedview.visualize(paths["b"]).rgb)
    run_fails(capsys, None, "render", paths["stack"], paths["stack"], "-o", tmp_path / "s", "--slice", "9")
    assert not (tmp_path / "s").exists()  # nothing written, not even the folder it made
    run_fails(capsys, None, "render", paths["a"], paths["b"], "-o", tmp_path / "c.png")
    run_fails(capsys, None, "render", paths["a"], paths["b"], "-o", tmp_path / "d", "--ext", ".zarr", "--clusters", "3")


def test_mask_foreground_and_clusters(tmp_path, capsys, data):
    root, paths = data
    run_ok(capsys, "render", paths["a"], "-o", tmp_path / "m.npz", "--mask", paths["mask"], "-q")
    vis, = embedview.PCA().fit_transform(paths["a"], mask=np.load(paths["mask"]))
    with np.load(tmp_path / "m.npz") as saved:
        np.testing.assert_array_equal(saved["rgb"], vis.rgb)
    assert not vis.valid[-1].any()

    err = run_ok(capsys, "render", paths["a"], "-o", tmp_path / "f.png", "--foreground", "auto",
                 "--image", root / "a_image.npy").err
    assert "foreground: first component" in err and (tmp_path / "f_figure.png").exists()
    run_fails(capsys, None, "render", paths["a"], "-o", tmp_path / "g.png", "--foreground-threshold", "0.5")

    run_ok(capsys, "render", paths["a"], "-o", tmp_path / "k.png", "--clusters", "4", "--image", root / "a_image.npy", "-q")
    colours = {tuple(c) for c in embedview.read_image(tmp_path / "k.png").reshape(-1, 3)}
    assert 2 <= len(colours - {(0, 0, 0)}) <= 4
    run_fails(capsys, None, "render", paths["a"], "-o", tmp_path / "k.zarr", "--clusters", "4")
    run_fails(capsys, None, "render", paths["a"], "-o", tmp_path / "k2.png", "--cluster-components", "2")


def test_similarity_command(tmp_path, capsys, data):
    root, paths = data
    err = run_ok(capsys, "similarity", paths["a"], "--point", "60,90", "-o", tmp_path / "s.npz",
                 "--image", root / "a_image.npy").err
    assert "cosine similarity" in err and (tmp_path / "s_figure.png").exists()
    sim = embedview.similarity(paths["a"], point=(60, 90))
    with np.load(tmp_path / "s.npz") as saved:
        np.testing.assert_array_equal(saved["components"], sim.components)
        assert json.loads(str(saved["metadata"]))["query"]["point"] == [60, 90]
    run_ok(capsys, "similarity", paths["stack"], "--point", "1,40,50", "-o", tmp_path / "t.png", "-q")
    run_ok(capsys, "similarity", paths["a"], "--mask", paths["mask"], "-o", tmp_path / "u.png", "-q")
    run_fails(capsys, None, "similarity", paths["a"], "--point", "500,90", "-o", tmp_path / "v.png")
    run_fails(capsys, None, "similarity", paths["a"], "-o", tmp_path / "v.png")
    assert not (tmp_path / "v.png").exists()


def test_vit_feature_files(tmp_path, capsys, data):
    _, paths = data
    run_ok(capsys, "render", paths["tokens"], "-o", tmp_path / "t.png", "--image-size", "224,224",
           "--patch-size", "16", "--prefix-tokens", "1", "-q")
    assert embedview.read_image(tmp_path / "t.png").shape == (14, 14, 3)
    err = run_fails(capsys, None, "render", paths["tokens"], "-o", tmp_path / "u.png", "--image-size", "224,224",
                    "--patch-size", "16")
    assert "prefix" in err
    run_fails(capsys, None, "render", paths["a"], "-o", tmp_path / "u.png", "--patch-size", "16")


def test_device_without_cuda_is_a_clear_error(tmp_path, capsys, data):
    _, paths = data
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    err = run_fails(capsys, None, "render", paths["a"], "-o", tmp_path / "x.png", "--device", "cuda")
    assert "CUDA" in err
    run_fails(capsys, None, "render", paths["a"], "-o", tmp_path / "x.png", "--device", "tpu")
    run_ok(capsys, "render", paths["a"], "-o", tmp_path / "y.png", "--device", "torch:cpu", "-q")
    np.testing.assert_allclose(embedview.read_image(tmp_path / "y.png").astype(int),
                               embedview.visualize(paths["a"]).rgb.astype(int), atol=1)
