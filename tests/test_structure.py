"""The package's shape (issue 10): no import cycles, a small visualize, a command line that only
parses and dispatches."""

import ast
import inspect

import embedview
from _imports import PACKAGE, cycles, import_graph


def test_the_import_graph_is_acyclic():
    graph = import_graph()
    assert len(graph) > 30 and "embedview._run.dask_executor" in graph["embedview._run.settings"]
    assert cycles(graph) == []


# The pipeline's layers, bottom up: a module imports only from its own layer or the ones below.
# The front-ends (the public package, cli, micro_sam, napari) sit on top.
LAYERS = ["_common", "_inputs", "_model", "_outputs", "_run", "_encode", "_workflows"]


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else len(LAYERS)


def test_each_layer_imports_only_from_the_layers_below():
    graph = import_graph()
    upward = sorted(f"{m} -> {t}" for m, targets in graph.items() for t in targets if _layer(t) > _layer(m))
    assert upward == []
    top_level = {p.stem for p in PACKAGE.glob("*.py")} | {p.name for p in PACKAGE.iterdir() if p.is_dir()}
    # the package is its layers plus the front-ends: no private module lies outside a layer
    assert top_level - {"__pycache__"} == set(LAYERS) | {"__init__", "__main__", "cli", "micro_sam", "napari"}


def test_visualize_has_at_most_ten_parameters():
    assert len(inspect.signature(embedview.visualize).parameters) <= 10


def test_the_command_line_is_parser_and_dispatch():
    """cli.py builds the parser, dispatches each command to the library and turns errors into
    one line; it holds no workflow and imports nothing heavy at module level."""
    tree = ast.parse((PACKAGE / "cli.py").read_text(encoding="utf-8"))
    functions = [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]
    parser = {"build_parser", "_positive_int", "_positive_float", "_pixel_size", "_int_list"}
    errors = {"main", "_fail", "_on_interrupt", "_quiet_from_now_on", "_let_writes_land", "_command_parser", "_flag_of"}
    for name in functions:
        assert (name in parser | errors or name.startswith("_add_") or name.endswith("_command")
                or name == "_option_inputs"), name
    imported = {node.module or "" for node in tree.body if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    assert imported <= {"__future__", "argparse", "sys", "_common.errors", "_common.version"}, imported
    commands = [n for n in functions if n.endswith("_command")]
    assert {"_render_command", "_fit_command", "_similarity_command", "_info_command", "_demo_command",
                                "_encode_command"} <= set(commands)
    for node in tree.body:  # each command's body is short: the work is in the library
        if isinstance(node, ast.FunctionDef) and node.name in commands:
            assert node.end_lineno - node.lineno < 25, node.name


def test_both_engines_conform_to_the_engine_protocol():
    """numpy and PyTorch engines implement :class:`Engine`: its methods, with its positional parameters."""
    import pytest

    from embedview._model.engines import Engine, NumpyEngine

    pytest.importorskip("torch")  # the torch engine is built on PyTorch (the module itself imports without it)
    from embedview._model import torch_engine
    for cls, engine in ((NumpyEngine, NumpyEngine()), (torch_engine.TorchEngine, torch_engine.TorchEngine("cpu"))):
        assert isinstance(engine, Engine), cls
        for name in ("accumulator", "project", "upsample"):
            wanted = [p for p in inspect.signature(getattr(Engine, name)).parameters.values()
                      if p.kind is p.POSITIONAL_OR_KEYWORD]
            got = list(inspect.signature(getattr(cls, name)).parameters.values())
            assert [p.name for p in got[:len(wanted)]] == [p.name for p in wanted], (cls, name)


def test_no_caller_uses_a_private_method_of_the_estimator_or_asks_for_its_state():
    """What PCA does is its public methods; "is it fitted?" is its own check (issue 16)."""
    for path in PACKAGE.rglob("*.py"):
        if path.name == "estimator.py":
            continue
        text = path.read_text(encoding="utf-8")
        assert "._run(" not in text and 'hasattr(model, "bases_")' not in text, path
