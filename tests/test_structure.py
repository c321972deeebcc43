"""The package's shape (issue 10): no import cycles, a small visualize, a command line that only
parses and dispatches."""

import ast
import inspect

import embedview
from _imports import PACKAGE, cycles, import_graph


def test_the_import_graph_is_acyclic():
    graph = import_graph()
    assert len(graph) > 30 and "embedview._dask" in graph["embedview._executors"] | graph["embedview._pipeline"]
    assert cycles(graph) == []


def test_visualize_has_at_most_ten_parameters():
    assert len(inspect.signature(embedview.visualize).parameters) <= 10


def test_the_command_line_is_parser_and_dispatch():
    """cli.py builds the parser, dispatches each command to the library and turns errors into
    one line; it holds no workflow and imports nothing heavy at module level."""
    tree = ast.parse((PACKAGE / "cli.py").read_text(encoding="utf-8"))
    functions = [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]
    parser = {"build_parser", "_positive_int", "_pixel_size", "_int_list"}
    errors = {"main", "_fail", "_on_sigterm", "in_cli_terms"}
    for name in functions:
        assert (name in parser | errors or name.startswith("_add_") or name.endswith("_command")
                or name == "_option_inputs"), name
    imported = {node.module or "" for node in tree.body if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    assert imported <= {"__future__", "argparse", "sys", "", "_errors"}, imported
    commands = [n for n in functions if n.endswith("_command")]
    assert {"_render_command", "_fit_command", "_similarity_command", "_info_command", "_demo_command"} <= set(commands)
    for node in tree.body:  # each command's body is short: the work is in the library
        if isinstance(node, ast.FunctionDef) and node.name in commands:
            assert node.end_lineno - node.lineno < 25, node.name
