"""Any ViT: tokens and feature maps with their preprocessing, placed exactly; the files they come in."""

import json
import struct
import sys
from fractions import Fraction

import numpy as np
import pytest

import embedview
from embedview import EmbedviewError
from embedview._common.geometry import CellGrid
from embedview._inputs.vit_arrays import from_feature_map, from_tokens
from embedview._inputs.vit_files import open_features, read_safetensors
from embedview._inputs.vit_geometry import Preprocess

import _synthetic as syn

M, C = 5, 12
PROTOS = syn.prototypes(M, C, seed=4)


# ---------------------------------------------------------------------------------------------
# an independent model of the preprocessing, in exact fractions


def _resized(shape, resize):
    """Resized (H_r, W_r), written out from torchvision's rules (not from embedview)."""
    h, w = shape
    if resize is None:
        return h, w
    if isinstance(resize, tuple):
        return resize
    mode, n = resize.split(":")
    n = int(n)
    if mode == "shortest":
        return (n, n * w // h) if h <= w else (n * h // w, n)
    return (n * h // w, n) if h < w else (n, n * w // h)


def _offset(resized, crop):
    if crop is None:
        return 0, 0
    out = []
    for r, c in zip(resized, crop):
        if c > r:
            out.append(-((c - r) // 2))
        else:
            d = r - c  # round half to even, as Python's round
            out.append(d // 2 + (1 if d % 2 and (d // 2) % 2 else 0))
    return tuple(out)


def _expected(shape, resize, crop, patch):
    """Per axis: the cell covering each pixel centre (-1: not covered), and each cell's centre pixel."""
    resized = _resized(shape, resize)
    offset = _offset(resized, crop)
    input_size = crop or resized
    cells, centres = [], []
    for n, r, c, m in zip(shape, resized, offset, input_size):
        g = m // patch
        cover = []
        for y in range(n):
            u = Fraction(2 * y + 1, 2) * r / n - c  # model-input coordinate of the pixel centre
            cover.append(int(u // patch) if 0 <= u < g * patch else -1)
        cells.append(np.array(cover))
        centre = [(Fraction(2 * i + 1, 2) * patch + c) * n / r for i in range(g)]
        centres.append(np.clip([int(v // 1) for v in centre], 0, n - 1))
    return cells, centres


def _case(shape, resize, crop, patch, seed=0):
    """Labels of an image, the label of each patch (at its centre pixel), and the expected picture."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, M, size=(-(-shape[0] // 3), -(-shape[1] // 3))).repeat(3, 0).repeat(3, 1)
    image = image[:shape[0], :shape[1]]
    (rows, cols), (cy, cx) = _expected(shape, resize, crop, patch)
    patch_labels = image[np.ix_(cy, cx)]
    truth = np.where((rows[:, None] >= 0) & (cols[None, :] >= 0),
                     patch_labels[np.ix_(np.maximum(rows, 0), np.maximum(cols, 0))], -1)
    return patch_labels, truth


def _pre(resize, crop):
    return Preprocess(resize, crop=crop)


CASES = {
    "as is, patch 16": ((224, 224), None, None, 16),
    "resize (224, 224) from 300x400": ((300, 400), (224, 224), None, 16),
    "shortest 256 + crop 224, patch 14": ((300, 452), "shortest:256", (224, 224), 14),
    "crop starting 0.125 into a pixel": ((290, 500), "shortest:256", (224, 224), 14),
    "as is, patch 14, remainder dropped": ((230, 300), None, None, 14),
    "crop larger than the image (padded)": ((200, 300), None, (224, 224), 16),
    "longest 224, fractional coverage end": ((300, 400), "longest:224", None, 16),
}


@pytest.mark.parametrize("case", CASES)
def test_tokens_are_exact_at_every_pixel(case):
    shape, resize, crop, patch = CASES[case]
    labels, truth = _case(shape, resize, crop, patch)
    gh, gw = labels.shape
    prefix = np.full((5, C), 1000.0, np.float32)  # CLS + 4 registers: would wreck the fit if kept
    tokens = np.concatenate([prefix, PROTOS[labels.ravel()]])
    src = from_tokens(tokens, shape, patch, prefix_tokens=5, preprocess=_pre(resize, crop))
    assert src.layout == "single" and src.pieces()[0].grid.shape == (gh, gw)
    vis = embedview.visualize(src, n_components=M - 1, pixel_size=1)
    assert vis.rgb.shape == shape + (3,)
    shown = syn.decode(vis.components, PROTOS, vis.basis)
    assert (shown == truth).all()
    assert (vis.valid == (truth >= 0)).all()  # cropped away / dropped: not drawn
    assert (vis.rgb[~vis.valid] == 0).all()
    # the fit saw exactly the cells that meet the drawn block (never padding, never prefix tokens)
    assert vis.basis.n_samples == _n_fitted(shape, resize, crop, patch, truth)


def _n_fitted(shape, resize, crop, patch, truth):
    """Cells meeting the block of drawn pixels and lying on the image, counted exactly."""
    resized = _resized(shape, resize)
    offset = _offset(resized, crop)
    counts = []
    for axis, (n, r, c, m) in enumerate(zip(shape, resized, offset, crop or resized)):
        drawn = np.nonzero((truth >= 0).any(axis=1 - axis))[0]
        a, b = int(drawn[0]), int(drawn[-1]) + 1
        edge = lambda i: (c + i * patch) * Fraction(n, r)  # noqa: E731  cell edge on the image
        counts.append(sum(1 for i in range(m // patch)
                          if edge(i) < min(b, (c + m) * Fraction(n, r)) and edge(i + 1) > max(a, 0)))
    return counts[0] * counts[1]


@pytest.mark.parametrize("case", ["shortest 256 + crop 224, patch 14", "resize (224, 224) from 300x400"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_feature_maps_are_exact_at_every_pixel(case, channels_last):
    shape, resize, crop, patch = CASES[case]
    labels, truth = _case(shape, resize, crop, patch, seed=1)
    fmap = syn.features_from_labels(labels, PROTOS)  # (C, h, w)
    if channels_last:
        fmap = np.ascontiguousarray(fmap.transpose(1, 2, 0))
    # patch size inferred: the model input divides evenly into the map
    src = from_feature_map(fmap, shape, preprocess=_pre(resize, crop), channels_last=channels_last)
    assert src.metadata["patch_size"] == [patch, patch]
    vis = embedview.visualize(src, n_components=M - 1, pixel_size=1)
    assert (syn.decode(vis.components, PROTOS, vis.basis) == truth).all()


@pytest.mark.parametrize("kind", ["tokens", "map"])
def test_batches_are_stacks(kind):
    shape, resize, crop, patch = CASES["shortest 256 + crop 224, patch 14"]
    cases = [_case(shape, resize, crop, patch, seed=s) for s in range(3)]
    if kind == "tokens":
        data = np.stack([np.concatenate([np.zeros((1, C), np.float32), PROTOS[lab.ravel()]]) for lab, _ in cases])
        src = from_tokens(data, shape, patch, prefix_tokens=1, preprocess=_pre(resize, crop))
    else:
        data = np.stack([syn.features_from_labels(lab, PROTOS) for lab, _ in cases])
        src = from_feature_map(data, shape, patch, preprocess=_pre(resize, crop))
    assert src.layout == "stack" and src.shape == (3,) + shape
    vis = embedview.visualize(src, n_components=M - 1, pixel_size=1)
    shown = syn.decode(vis.components, PROTOS, vis.basis)
    for z, (_, truth) in enumerate(cases):
        assert (shown[z] == truth).all()
    # B = 1 is a single image
    if kind == "tokens":
        one = from_tokens(data[:1], shape, patch, prefix_tokens=1, preprocess=_pre(resize, crop))
    else:
        one = from_feature_map(data[:1], shape, patch, preprocess=_pre(resize, crop))
    assert one.layout == "single" and one.shape == shape


def test_non_square_cells_default_to_the_smaller_side():
    labels, _ = _case((300, 400), (224, 224), None, 16)
    src = from_tokens(PROTOS[labels.ravel()], (300, 400), 16, preprocess=Preprocess((224, 224)))
    grid = src.pieces()[0].grid
    assert grid.cell_size == (Fraction(16 * 300, 224), Fraction(16 * 400, 224))
    vis = embedview.visualize(src, n_components=M - 1)
    assert vis.scale == (float(grid.cell_size[0]),) * 2
    assert vis.valid.all()


# ---------------------------------------------------------------------------------------------
# geometry


def test_preprocess_follows_torchvision():
    pre = Preprocess("shortest:256", crop=224)
    assert pre == Preprocess(256, resize_mode="shortest", crop=(224, 224))
    assert pre.resized_size((300, 452)) == (256, 385)  # int(256 * 452 / 300) = int(385.7)
    assert pre.crop_start((300, 452)) == (16, 80)       # round(80.5) = 80, halves to even
    assert pre.crop_start((300, 454)) == (16, 82)       # int(387.4) = 387: round(81.5) = 82
    assert Preprocess("longest:224").resized_size((300, 400)) == (168, 224)
    assert Preprocess(crop=(224, 224)).crop_start((200, 300)) == (-12, 38)
    assert Preprocess(crop=(224, 224), crop_offset=(0, 5)).crop_start((300, 300)) == (0, 5)
    for resize in [None, (224, 224), "shortest:256", "longest:224"]:
        for shape in [(300, 452), (453, 301), (224, 224), (17, 1000)]:
            assert Preprocess(resize).resized_size(shape) == _resized(shape, resize)
            for crop in [(224, 224), (100, 300)]:
                assert Preprocess(resize, crop=crop).crop_start(shape) == _offset(_resized(shape, resize), crop)


@pytest.mark.parametrize("bad", [dict(resize="middle:3"), dict(resize=0), dict(resize_mode="short"),
                                 dict(crop=(1, 2, 3)), dict(crop_offset=(1, 2))])
def test_bad_preprocess_is_refused(bad):
    with pytest.raises(EmbedviewError):
        Preprocess(**bad)


def test_cell_grid_with_a_fractional_negative_origin():
    rng = np.random.default_rng(0)
    for _ in range(50):
        s = Fraction(int(rng.integers(5, 200)), int(rng.integers(3, 17)))
        o = Fraction(int(rng.integers(-300, 300)), int(rng.integers(1, 9)))
        n, g = int(rng.integers(20, 200)), int(rng.integers(1, 30))
        end = min(Fraction(n), o + g * s)
        if end <= max(0, o):
            continue
        grid = CellGrid((o, o), (s, s), (g, g), (end - o, end - o))
        vh = grid.valid_shape[0]
        assert vh == min(g, -((o - end) // s))  # cells starting before the covered end
        ys = np.arange(n)
        inside = np.array([max(0, o) <= Fraction(2 * y + 1, 2) < end for y in ys])
        exact = np.array([int((Fraction(2 * y + 1, 2) - o) // s) for y in ys])
        assert (grid.cell_of(ys[inside] + 0.5, 0) == exact[inside]).all()
        a, b = grid.cells_overlapping(0, n, 0)
        meets = [i for i in range(g) if o + i * s < end and o + (i + 1) * s > 0]
        assert (a, b) == (meets[0], meets[-1] + 1)


# ---------------------------------------------------------------------------------------------
# prefix tokens, grids and their errors


def test_prefix_tokens_are_dropped():
    rng = np.random.default_rng(0)
    patches = rng.normal(size=(14 * 14, C)).astype(np.float32)
    tokens = np.concatenate([rng.normal(size=(5, C)).astype(np.float32) * 100, patches])
    src = from_tokens(tokens, (224, 224), 16, prefix_tokens=5)
    x = src.read(src.pieces()[0])
    assert x.shape == (C, 14, 14) and x.dtype == np.float32
    np.testing.assert_array_equal(x, patches.reshape(14, 14, C).transpose(2, 0, 1))


@pytest.mark.parametrize("n_prefix, hint", [(1, "prefix_tokens=1"), (5, "prefix_tokens=5")])
def test_prefix_tokens_not_dropped_are_named(n_prefix, hint):
    tokens = np.zeros((n_prefix + 196, C), np.float32)
    with pytest.raises(EmbedviewError, match=rf"{n_prefix + 196} tokens.*14×14.*needs 196.*{hint}"):
        from_tokens(tokens, (224, 224), 16)


def test_wrong_grid_size_is_a_clear_error():
    tokens = np.zeros((1 + 150, C), np.float32)
    with pytest.raises(EmbedviewError, match=r"151 tokens, minus prefix_tokens=1 leaves 150.*needs 196.*patch_size="):
        from_tokens(tokens, (224, 224), 16, prefix_tokens=1)
    with pytest.raises(EmbedviewError, match=r"grid \[10, 15\] does not fit a 224×224 model input.*\[14, 14\]"):
        from_tokens(np.zeros((150, C), np.float32), (224, 224), 16, grid=(10, 15))
    with pytest.raises(EmbedviewError, match=r"16×16 grid but a 224×224 model input with patch size 16 gives \[14, 14\]"):
        from_feature_map(np.zeros((C, 16, 16), np.float32), (224, 224), 16)
    with pytest.raises(EmbedviewError, match="does not divide.*patch_size="):
        from_feature_map(np.zeros((C, 15, 15), np.float32), (224, 224))
    with pytest.raises(EmbedviewError, match=r"expected \(N, C\) or \(B, N, C\)"):
        from_tokens(np.zeros((1, 2, 196, C), np.float32), (224, 224), 16)


def test_grid_is_inferred_and_a_padded_grid_accepted():
    # 230 // 14 = 16 rows (remainder dropped); a model that pads gives ceil(230 / 14) = 17
    src = from_tokens(np.zeros((16 * 21, C), np.float32), (230, 300), 14)
    assert src.pieces()[0].grid.shape == (16, 21) and src.pieces()[0].inner == ((0, 224), (0, 294))
    padded = from_tokens(np.zeros((17 * 22, C), np.float32), (230, 300), 14)
    assert padded.pieces()[0].grid.shape == (17, 22) and padded.pieces()[0].inner == ((0, 230), (0, 300))
    assert padded.pieces()[0].grid.valid_shape == (17, 22)
    # an explicit grid picks between them and checks the count
    assert from_tokens(np.zeros((16 * 21, C), np.float32), (230, 300), 14, grid=(16, 21)).pieces()[0].grid.shape == (16, 21)


def test_torch_tensors_are_accepted():
    torch = pytest.importorskip("torch")
    t = torch.randn(2, 1 + 196, C, dtype=torch.bfloat16, requires_grad=True)
    src = from_tokens(t, (224, 224), 16, prefix_tokens=1)
    expected = t.detach().float()[1, 1:].numpy().reshape(14, 14, C).transpose(2, 0, 1)
    np.testing.assert_array_equal(src.read(src.pieces()[1]), expected)


# ---------------------------------------------------------------------------------------------
# files


def _write_safetensors(path, tensors: dict, dtype="F32"):
    """A minimal writer of the format (header length, JSON header, little-endian data)."""
    header, blobs, offset = {"__metadata__": {"format": "np"}}, [], 0
    for name, x in tensors.items():
        if dtype == "BF16":
            raw = (np.ascontiguousarray(x, "<f4").view("<u4") >> 16).astype("<u2").tobytes()
        else:
            raw = np.ascontiguousarray(x, {"F32": "<f4", "F16": "<f2", "F64": "<f8"}[dtype]).tobytes()
        header[name] = {"dtype": dtype, "shape": list(x.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    return path


def _tokens(seed=0, batch=None):
    rng = np.random.default_rng(seed)
    shape = (1 + 4 + 196, C) if batch is None else (batch, 1 + 4 + 196, C)
    return rng.normal(size=shape).astype(np.float32)


def _same_pieces(a, b, rtol=0.0):
    assert (a.layout, a.shape, a.n_channels) == (b.layout, b.shape, b.n_channels)
    for pa, pb in zip(a.pieces(), b.pieces()):
        assert (pa.grid, pa.inner) == (pb.grid, pb.inner)
        np.testing.assert_allclose(a.read(pa), b.read(pb), rtol=rtol)


GEOMETRY = dict(image_size=(224, 224), patch_size=16, prefix_tokens=5)


@pytest.mark.parametrize("batch", [None, 3])
def test_npy_is_memory_mapped(tmp_path, batch):
    x = _tokens(batch=batch)
    np.save(tmp_path / "t.npy", x)
    src = open_features(tmp_path / "t.npy", **GEOMETRY)
    assert isinstance(src.features._data, np.memmap)
    _same_pieces(src, from_tokens(x, (224, 224), 16, prefix_tokens=5))


def test_feature_map_paths_visualize_directly(tmp_path):
    fmap = np.random.default_rng(0).normal(size=(C, 14, 14)).astype(np.float32)
    np.save(tmp_path / "map.npy", fmap)
    vis = embedview.visualize(str(tmp_path / "map.npy"), original_size=(224, 224), pixel_size=1)
    assert vis.rgb.shape == (224, 224, 3) and vis.valid.all()
    with pytest.raises(EmbedviewError, match=r"image_size=\(H, W\)"):
        embedview.visualize(str(tmp_path / "map.npy"))


def test_npz_needs_a_key_when_it_holds_several(tmp_path):
    x, cls = _tokens(), np.zeros((1, C), np.float32)
    np.savez(tmp_path / "one.npz", tokens=x)
    np.savez_compressed(tmp_path / "two.npz", patch_tokens=x, cls=cls)
    _same_pieces(open_features(tmp_path / "one.npz", **GEOMETRY), from_tokens(x, (224, 224), 16, prefix_tokens=5))
    _same_pieces(open_features(tmp_path / "two.npz", key="patch_tokens", **GEOMETRY),
                 from_tokens(x, (224, 224), 16, prefix_tokens=5))
    with pytest.raises(EmbedviewError, match=r"holds 2 arrays \('patch_tokens', 'cls'\).*key="):
        open_features(tmp_path / "two.npz", **GEOMETRY)
    with pytest.raises(EmbedviewError, match=r"no array 'x'.*'patch_tokens', 'cls'"):
        open_features(tmp_path / "two.npz", key="x", **GEOMETRY)


def test_pickled_npy_is_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(EmbedviewError, match="holds Python objects.*never unpickles"):
        open_features(tmp_path / "obj.npy", **GEOMETRY)


@pytest.mark.parametrize("dtype, rtol", [("F32", 0), ("F64", 0), ("F16", 1e-3), ("BF16", 1e-2)])
def test_safetensors_without_the_package(tmp_path, dtype, rtol):
    x = _tokens(batch=2)
    path = _write_safetensors(tmp_path / "t.safetensors", {"last_hidden_state": x}, dtype)
    src = open_features(path, **GEOMETRY)
    assert src.layout == "stack"
    if dtype == "BF16":  # the stored bits are truncated float32: compare those exactly
        x = ((x.view("<u4") >> 16) << 16).view("<f4")
    _same_pieces(src, from_tokens(x, (224, 224), 16, prefix_tokens=5), rtol=rtol)
    if dtype != "BF16":
        assert isinstance(read_safetensors(path)["last_hidden_state"], np.memmap)


def test_safetensors_agrees_with_the_package(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    x = _tokens()
    safetensors_numpy.save_file({"a": x, "b": x[:3].astype(np.float16)}, str(tmp_path / "p.safetensors"))
    tensors = read_safetensors(tmp_path / "p.safetensors")
    np.testing.assert_array_equal(tensors["a"], x)
    np.testing.assert_array_equal(tensors["b"], x[:3].astype(np.float16))


def test_safetensors_errors(tmp_path):
    path = _write_safetensors(tmp_path / "t.safetensors", {"a": _tokens(), "b": _tokens(1)})
    with pytest.raises(EmbedviewError, match=r"holds 2 arrays \('a', 'b'\)"):
        open_features(path, **GEOMETRY)
    (tmp_path / "bad.safetensors").write_bytes(struct.pack("<Q", 10**6) + b"{}")
    with pytest.raises(EmbedviewError, match=r"not a valid .safetensors file: its header length 1000000 exceeds the file"):
        open_features(tmp_path / "bad.safetensors", **GEOMETRY)
    header = json.dumps({"a": {"dtype": "I32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    (tmp_path / "int.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(8))
    with pytest.raises(EmbedviewError, match="dtype I32.*float32"):
        open_features(tmp_path / "int.safetensors", **GEOMETRY)


def test_pt_tensors_and_dicts(tmp_path):
    torch = pytest.importorskip("torch")
    x = _tokens(batch=2)
    ref = from_tokens(x, (224, 224), 16, prefix_tokens=5)
    torch.save(torch.from_numpy(x), tmp_path / "t.pt")
    _same_pieces(open_features(tmp_path / "t.pt", **GEOMETRY), ref)
    torch.save(torch.from_numpy(x), tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    _same_pieces(open_features(tmp_path / "legacy.pth", **GEOMETRY), ref)
    # DINOv2's forward_features: a dict with several tensors (and None)
    out = {"x_norm_clstoken": torch.zeros(2, C), "x_norm_patchtokens": torch.from_numpy(x[:, 5:].copy()),
           "masks": None}
    torch.save(out, tmp_path / "d.pt")
    _same_pieces(open_features(tmp_path / "d.pt", key="x_norm_patchtokens", image_size=(224, 224), patch_size=16), ref)
    with pytest.raises(EmbedviewError, match=r"holds 2 arrays \('x_norm_clstoken', 'x_norm_patchtokens'\).*key="):
        open_features(tmp_path / "d.pt", image_size=(224, 224), patch_size=16)
    torch.save(torch.from_numpy(x).to(torch.bfloat16), tmp_path / "bf16.pt")
    src = open_features(tmp_path / "bf16.pt", **GEOMETRY)
    _same_pieces(src, from_tokens(torch.from_numpy(x).to(torch.bfloat16).float().numpy(), (224, 224), 16,
                                  prefix_tokens=5))


class _NotATensor:
    pass


def test_pt_with_objects_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"obj": _NotATensor()}, tmp_path / "obj.pt")
    with pytest.raises(EmbedviewError, match="weights_only=True"):
        open_features(tmp_path / "obj.pt", **GEOMETRY)
    torch.save([torch.zeros(3)], tmp_path / "list.pt")
    with pytest.raises(EmbedviewError, match="holds a list"):
        open_features(tmp_path / "list.pt", **GEOMETRY)


def test_pt_without_torch_names_the_extra(tmp_path, monkeypatch):
    (tmp_path / "t.pt").write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(EmbedviewError, match=r'pip install "embedview\[torch\]"'):
        open_features(tmp_path / "t.pt", **GEOMETRY)


# ---------------------------------------------------------------------------------------------
# layouts in files


def test_auto_layout(tmp_path):
    rng = np.random.default_rng(0)
    cases = {
        "tokens2": (rng.normal(size=(201, C)), "tokens", {}),
        "tokens3": (rng.normal(size=(2, 201, C)), "tokens", {}),
        "map3": (rng.normal(size=(C, 14, 14)), "feature map", {}),
        "map4": (rng.normal(size=(2, C, 14, 14)), "feature map", {}),
        "map3_last": (rng.normal(size=(14, 14, C)), "feature map", {"channels_last": True}),
        "map4_last": (rng.normal(size=(2, 14, 14, C)), "feature map", {"channels_last": True}),
    }
    for name, (x, kind, extra) in cases.items():
        np.save(tmp_path / f"{name}.npy", x.astype(np.float32))
        src = open_features(tmp_path / f"{name}.npy", **GEOMETRY, **extra)
        assert src.metadata["kind"] == kind, name
        assert src.read(src.pieces()[-1]).shape == (C, 14, 14)
    # forced layouts
    src = open_features(tmp_path / "map3.npy", layout="map", image_size=(224, 224))
    assert src.metadata["patch_size"] == [16, 16]
    with pytest.raises(EmbedviewError, match="has 14 tokens"):  # (C, h, w) read as (B, N, C)
        open_features(tmp_path / "map3.npy", layout="tokens", **GEOMETRY)


def test_ambiguous_or_unfitting_3d_arrays_ask_for_layout(tmp_path):
    # (4, 4, 1): 4 frames of 4 tokens of 1 channel, or 4 channels of a 4×1 map, of a 64×16 image
    np.save(tmp_path / "both.npy", np.zeros((4, 4, 1), np.float32))
    with pytest.raises(EmbedviewError, match=r"fits both.*layout='tokens' or layout='map'"):
        open_features(tmp_path / "both.npy", image_size=(64, 16), patch_size=16)
    assert open_features(tmp_path / "both.npy", layout="tokens", image_size=(64, 16), patch_size=16).layout == "stack"
    # neither: what does not match, for the reading its shape suggests (no layout= to try: no such flag)
    np.save(tmp_path / "neither.npy", np.zeros((2, 50, 8), np.float32))
    with pytest.raises(EmbedviewError, match=r"has 50 tokens, minus prefix_tokens=5 leaves 45.*pass the right patch_size="):
        open_features(tmp_path / "neither.npy", **GEOMETRY)
    np.save(tmp_path / "neither_map.npy", np.zeros((8, 5, 5), np.float32))
    with pytest.raises(EmbedviewError, match=r"has a 5×5 grid"):
        open_features(tmp_path / "neither_map.npy", **GEOMETRY)
    with pytest.raises(EmbedviewError, match=r"tokens need patch_size="):
        open_features(tmp_path / "neither.npy", image_size=GEOMETRY["image_size"])


def test_file_errors(tmp_path):
    with pytest.raises(EmbedviewError, match="does not exist"):
        open_features(tmp_path / "missing.npy", **GEOMETRY)
    (tmp_path / "x.h5").write_bytes(b"")
    with pytest.raises(EmbedviewError, match=r"\.npy, \.npz, \.safetensors"):
        open_features(tmp_path / "x.h5", **GEOMETRY)
    np.save(tmp_path / "t.npy", _tokens())
    with pytest.raises(EmbedviewError, match="patch_size="):
        open_features(tmp_path / "t.npy", image_size=(224, 224))
    with pytest.raises(EmbedviewError, match="layout must be"):
        open_features(tmp_path / "t.npy", layout="grid", **GEOMETRY)


@pytest.mark.parametrize("patch", [float("inf"), float("nan"), True, 2.5, 0, (16, float("inf"))])
def test_bad_patch_size_is_one_sentence(patch):
    tokens = np.zeros((16, 8), np.float32)
    with pytest.raises(embedview.EmbedviewError, match="patch_size must be a positive integer"):
        embedview.from_tokens(tokens, (64, 64), patch)
