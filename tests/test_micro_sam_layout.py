"""The micro_sam layout has one home, and the source modules import without cycles (issue 10)."""

import ast

import numpy as np
import pytest

import embedview
from _imports import PACKAGE, cycles, import_graph
from embedview._inputs import micro_sam_layout as layout

from _fixtures import DATA


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "embedview._inputs.vit_files" in graph["embedview._inputs.sources"]
    assert "embedview._inputs.container" in graph["embedview._inputs.micro_sam_layout"]  # imported inside a function
    assert "embedview._inputs.micro_sam_layout" in graph["embedview.napari._detect"]
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [{"a", "b"}]


def test_the_layout_is_read_and_written_in_one_module():
    """Nothing outside _inputs/micro_sam_layout defines a reader, writer or detector of the container."""
    layout_names = {"open_container", "from_group", "from_embeddings_dict", "from_features", "container_holding",
                    "write_micro_sam_embeddings", "is_micro_sam_container", "root_attributes", "zarr_format",
                    "check_feature_shape", "VFM_LAYOUTS", "ROOT_ATTRIBUTES", "sam_input_size"}
    legacy = {"_from_path", "_from_group", "_from_tiles", "_from_embeddings_dict", "_from_features", "_vfm_mode",
              "_check_patch_grid", "_container_holding", "_root_attributes", "_zarr_format", "_write_array"}
    for path in PACKAGE.rglob("*.py"):
        if path.name == "micro_sam_layout.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        defined = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
        defined |= {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                    if isinstance(t, ast.Name)}
        assert not defined & (layout_names | legacy), path


@pytest.mark.parametrize("case", ["2d", "2d_zarr2", "3d", "tiled2d", "tiled2d_zarr2", "tiled3d", "tiled2d_masked"])
def test_detect_and_sniff_agree_with_zarr(case):
    import zarr

    path = DATA / f"{case}.zarr"
    assert layout.is_micro_sam_container(path)
    assert layout.zarr_format(path) == zarr.open_group(str(path), mode="r").metadata.zarr_format
    assert layout.root_attributes(str(path)) == dict(zarr.open_group(str(path), mode="r").attrs)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_written_containers_are_read_back(tmp_path, zarr_format):
    features = np.random.default_rng(0).normal(size=(2, 1, 4, 8, 8)).astype(np.float32)
    path = layout.write_micro_sam_embeddings(tmp_path / "e.zarr", features, original_size=(100, 60),
                                             zarr_format=zarr_format)
    assert layout.is_micro_sam_container(path) and layout.zarr_format(path) == zarr_format
    src = layout.open_container(str(path))
    assert (src.layout, src.image_shape, src.n_slices) == ("stack", (100, 60), 2)
    assert list(src.metadata["input_size"]) == list(layout.sam_input_size((100, 60), 8))
    np.testing.assert_array_equal(src.read(src.pieces()[1]), features[1, 0])


def test_the_writer_refuses_what_micro_sam_never_writes(tmp_path):
    with pytest.raises(embedview.EmbedviewError, match=r"have shape \[4, 8, 8\]; expected \(1, C, h, w\)"):
        layout.write_micro_sam_embeddings(tmp_path / "e.zarr", np.zeros((4, 8, 8), np.float32),
                                          original_size=(10, 10))
    assert not (tmp_path / "e.zarr").exists()
