"""``embedview.Encoder``: any torch module with its declared preprocessing (random weights, fast).

The declaration (resize, crop, pad, patch size, prefix tokens) travels with the embeddings: the
grid embedview derives from it is the same in memory and when the written file is read back.
"""

from fractions import Fraction

import numpy as np
import pytest

import embedview

torch = pytest.importorskip("torch")


class Tokens(torch.nn.Module):
    """A ViT-like stand-in: a patch embedding, then ``prefix`` extra tokens in front."""

    def __init__(self, patch=14, dim=8, prefix=1):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Conv2d(3, dim, patch, stride=patch)
        self.prefix = prefix

    def forward(self, x):
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        return torch.cat([tokens[:, :1].mul(0).add(1e3)] * self.prefix + [tokens], dim=1)


def test_a_dino_style_encoder_with_prefix_tokens_records_its_grid(tmp_path):
    encoder = embedview.Encoder(Tokens(prefix=5), patch_size=14, preprocess=embedview.Preprocess("shortest:112", crop=98),
                                prefix_tokens=5, name="tokens")
    image = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    in_memory = embedview.encode(image, encoder, device="cpu")
    written = embedview.encode(image, encoder, device="cpu", output=tmp_path / "emb.zarr")
    grid = in_memory.pieces()[0].grid
    assert grid.shape == (7, 7) and grid == written.pieces()[0].grid
    # resized to 112×149 (torchvision truncates), cropped at torchvision's CenterCrop offset 26
    assert grid.cell_size == (Fraction(14 * 120, 112), Fraction(14 * 160, 149))
    assert grid.origin == (Fraction(7 * 120, 112), Fraction(26 * 160, 149))
    np.testing.assert_array_equal(in_memory.read(in_memory.pieces()[0]), written.read(written.pieces()[0]))
    assert np.abs(in_memory.read(in_memory.pieces()[0])).max() < 1e3  # the prefix tokens were dropped
    assert written.metadata["embedview_encoder"]["prefix_tokens"] == 5


def test_a_tiled_stack_is_written_as_micro_sam_lays_it_out(tmp_path):
    conv = torch.nn.Conv2d(3, 4, 16, stride=16)
    encoder = embedview.Encoder(conv, patch_size=16, preprocess=embedview.Preprocess(
        "longest:64", rounding="nearest", pad=64), mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375),
        pixel_range=255, name="tiny")
    stack = np.random.default_rng(1).integers(0, 255, (2, 90, 130), dtype=np.uint8)
    src = embedview.encode(stack, encoder, ndim=3, tile_shape=(64, 64), halo=(8, 8), output=tmp_path / "t.zarr",
                           batch_size=3, device="cpu")
    assert src.layout == "tiled stack" and src.tiling.n_tiles == 6 and len(src.pieces()) == 12
    import zarr

    root = zarr.open_group(str(tmp_path / "t.zarr"), mode="r")
    assert root.attrs["tile_shape"] == [64, 64] and root.attrs["halo"] == [8, 8] and root.attrs["input_size"] is None
    assert root["features/5"].shape == (2, 1, 4, 4, 4) and root["features/5"].chunks == (1, 1, 4, 4, 4)
    assert dict(root["features/5"].attrs) == {"original_size": [34, 10], "input_size": [64, 19]}
    import hashlib

    assert root.attrs["data_signature"] == hashlib.sha1(stack.tobytes()).hexdigest()
    assert embedview.visualize(src).rgb.shape[:1] == (2,)


class Probe(torch.nn.Module):
    """Each cell's feature is its patch's mean input value (a patch embedding set to averaging),
    as a feature map or as tokens behind ``prefix`` extra ones."""

    def __init__(self, patch, prefix=None):
        super().__init__()
        self.pool, self.prefix = torch.nn.AvgPool2d(patch), prefix

    def forward(self, x):
        out = self.pool(x)
        if self.prefix is None:
            return out
        tokens = out.flatten(2).transpose(1, 2)
        return torch.cat([torch.full_like(tokens[:, :1], -1.0)] * self.prefix + [tokens], dim=1)


@pytest.mark.parametrize("shape", [(300, 256), (256, 256)])
@pytest.mark.parametrize("style, patch, preprocess, prefix", [
    ("SAM: longest side, rounded, bottom/right pad", 16,
     embedview.Preprocess("longest:1024", rounding="nearest", pad=1024), None),
    ("DINO: shortest side, centre crop", 14, embedview.Preprocess("shortest:112", crop=98), 1),
    ("fixed square", 16, embedview.Preprocess((224, 224)), 4),
])
def test_a_probe_encoder_finds_every_cell_where_the_declared_grid_puts_it(shape, style, patch, preprocess, prefix):
    """On a ramp image (pixel value = its column), the probe's feature is the column at its
    patch's centre, measured through the real resize: the derived grid puts every cell there."""
    image = np.broadcast_to(np.arange(shape[1], dtype=np.uint8), shape).copy()
    encoder = embedview.Encoder(Probe(patch, prefix), patch_size=patch, preprocess=preprocess, mean=(0, 0, 0),
                                std=(1, 1, 1), pixel_range=255, prefix_tokens=prefix or 0, name="probe")
    src = embedview.encode(image, encoder, device="cpu")
    piece = src.pieces()[0]
    grid, features = piece.grid, src.read(piece)[0]
    rows = range(1, grid.valid_shape[0] - 1)
    cols = range(1, grid.valid_shape[1] - 1)
    measured = np.array([[features[i, j] + 0.5 for j in cols] for i in rows])  # the column's centre
    expected = np.array([float(grid.origin[1] + (j + Fraction(1, 2)) * grid.cell_size[1]) for j in cols])
    assert np.abs(measured - expected).max() < 0.15, style


class Recorded:
    """An image array that records every window read from it."""

    def __init__(self, array):
        self.array, self.shape, self.dtype, self.reads = array, array.shape, array.dtype, []

    def __getitem__(self, index):
        out = self.array[index]
        self.reads.append(out.size)
        return out


def test_a_tiled_image_is_read_window_by_window():
    """Tiles are read as their outer blocks (and the signature band by band), never the whole image."""
    image = Recorded(np.random.default_rng(2).integers(0, 255, (300, 400, 3), dtype=np.uint8))
    encoder = embedview.Encoder(torch.nn.Conv2d(3, 2, 16, stride=16), patch_size=16, preprocess=embedview.Preprocess(
        "longest:64", rounding="nearest", pad=64), pixel_range=255, name="tiny")
    src = embedview.encode(image, encoder, tile_shape=(100, 100), halo=(10, 10), device="cpu")
    assert len(src.pieces()) == 12
    tile_reads = [n for n in image.reads if n <= 120 * 120 * 3]
    assert len(tile_reads) == 12 and max(tile_reads) == 120 * 120 * 3
    assert len(image.reads) == 13  # and one band for the data signature (the image is under 64 MiB)


def test_encoding_again_replaces_embeddings_embedview_wrote(tmp_path):
    encoder = embedview.Encoder(torch.nn.Conv2d(3, 2, 16, stride=16), patch_size=16, name="tiny")
    image = np.zeros((32, 48), np.uint8)
    embedview.encode(image, encoder, output=tmp_path / "e.zarr", device="cpu")
    again = embedview.encode(image + 1, encoder, output=tmp_path / "e.zarr", device="cpu")
    import hashlib

    assert again.metadata["data_signature"] == hashlib.sha1((image + 1).tobytes()).hexdigest()
    assert again.metadata["embedview"]["embedview_kind"] == "embeddings"
    with pytest.raises(embedview.EmbedviewError, match="would overwrite the embeddings"):
        embedview.visualize(again, 2, output=tmp_path / "e.zarr")
