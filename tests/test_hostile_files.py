"""Careless and hostile feature and basis files: each ends in one sentence and exit 2, never a traceback.

Every damaged ``.npy``, ``.npz``, ``.safetensors`` and ``.pt`` goes through the command line
(exit 2, one line on stderr, the input byte-identical, nothing written); the ones that could
allocate without bound run in a subprocess under an address-space limit, so a regression fails
fast instead of freezing the machine. Hypothesis fuzzes the three headers through the API. Also
here: large and tiny finite features draw the same picture as ordinary ones, and damaged basis
files are refused on load.
"""

import hashlib
import importlib.util
import io
import json
import math
import os
import struct
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import embedview
from embedview import EmbedviewError
from embedview._model.basis_file import load_basis, save_basis
from embedview._model.fit import Accumulator
from embedview.cli import main

SIZE, PATCH, GRID, C = (64, 64), 16, (4, 4), 8
GEOMETRY = dict(image_size=SIZE, patch_size=PATCH)
CLI_GEOMETRY = ["--image-size", "64,64", "--patch-size", "16"]
SRC = str(Path(__file__).parents[1] / "src")
HAS_TORCH = importlib.util.find_spec("torch") is not None


def _tokens(seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(GRID[0] * GRID[1], C)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# writers of (damaged) files


def _npy_bytes(header: str | bytes, data: bytes = b"", version=(1, 0)) -> bytes:
    """An .npy stream with a header written verbatim (padded as numpy pads it)."""
    text = header.encode("utf-8") if isinstance(header, str) else header
    length_format = "<H" if version == (1, 0) else "<I"
    pre = b"\x93NUMPY" + bytes(version)
    n = len(pre) + struct.calcsize(length_format) + len(text) + 1
    text += b" " * (-n % 64) + b"\n"
    return pre + struct.pack(length_format, len(text)) + text + data


def _npy_header(descr="'<f4'", fortran="False", shape="(16, 8)") -> str:
    return f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}"


def _safetensors_bytes(header, data: bytes = b"") -> bytes:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def _good_entry(**change) -> dict:
    entry = {"dtype": "F32", "shape": [16, 8], "data_offsets": [0, 512]}
    entry.update(change)
    return entry


def _zip_bytes(members: dict, compression=zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _npz_of(x: np.ndarray, compressed=False) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, tokens=x)
    return buffer.getvalue()


def _torch_bytes(obj) -> bytes:
    torch = pytest.importorskip("torch")
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _torch():
    return pytest.importorskip("torch")


DATA = _tokens().tobytes()
DEEP = 100_000

# (file name, bytes or a function making them, what the one sentence must say)
CASES = {
    # .safetensors
    "st-deep-list": ("f.safetensors", lambda: _safetensors_bytes(b"[" * DEEP + b"]" * DEEP), "nested too deeply"),
    "st-deep-in-entry": ("f.safetensors", lambda: _safetensors_bytes(
        b'{"x": {"dtype": "F32", "shape": ' + b"[" * DEEP + b"]" * DEEP + b"}}"), "nested too deeply"),
    "st-entry-number": ("f.safetensors", lambda: _safetensors_bytes({"x": 5}, DATA), "not an object with dtype"),
    "st-entry-list": ("f.safetensors", lambda: _safetensors_bytes({"x": [1, 2]}, DATA), "not an object with dtype"),
    "st-no-offsets": ("f.safetensors", lambda: _safetensors_bytes(
        {"x": {"dtype": "F32", "shape": [16, 8]}}, DATA), "not an object with dtype, shape and data_offsets"),
    "st-shape-null": ("f.safetensors", lambda: _safetensors_bytes({"x": _good_entry(shape=None)}, DATA),
                      "shape None"),
    "st-shape-infinite": ("f.safetensors", lambda: _safetensors_bytes(
        {"x": _good_entry(shape=[float("inf"), 8])}, DATA), "shape [inf, 8]"),
    "st-shape-negative": ("f.safetensors", lambda: _safetensors_bytes({"x": _good_entry(shape=[-16, -8])}, DATA),
                          "non-negative integers"),
    "st-shape-float": ("f.safetensors", lambda: _safetensors_bytes({"x": _good_entry(shape=[16.0, 8])}, DATA),
                       "non-negative integers"),
    "st-shape-many-dims": ("f.safetensors", lambda: _safetensors_bytes({"x": _good_entry(shape=[1] * 100)}, DATA),
                           "at most 32 sizes"),
    "st-shape-huge": ("f.safetensors", lambda: _safetensors_bytes(
        {"x": _good_entry(shape=[10**9, 10**9], data_offsets=[0, 4 * 10**18])}, DATA), "larger than any array"),
    "st-offsets-past-end": ("f.safetensors", lambda: _safetensors_bytes(
        {"x": _good_entry(data_offsets=[512, 1024])}, DATA), "data_offsets"),
    "st-offsets-reversed": ("f.safetensors", lambda: _safetensors_bytes(
        {"x": _good_entry(data_offsets=[512, 0])}, DATA), "data_offsets"),
    "st-offsets-strings": ("f.safetensors", lambda: _safetensors_bytes(
        {"x": _good_entry(data_offsets=["0", "512"])}, DATA), "data_offsets"),
    "st-dtype-list": ("f.safetensors", lambda: _safetensors_bytes({"x": _good_entry(dtype=["F32"])}, DATA),
                      "has dtype"),
    "st-header-array": ("f.safetensors", lambda: _safetensors_bytes([1, 2, 3], DATA), "not a JSON object"),
    "st-header-not-utf8": ("f.safetensors", lambda: _safetensors_bytes(b'{"\xff": 1}', DATA), "not valid JSON"),
    "st-header-not-json": ("f.safetensors", lambda: _safetensors_bytes(b"{nope", DATA), "not valid JSON"),
    "st-header-too-long": ("f.safetensors", lambda: struct.pack("<Q", 2**63) + b"{}", "header length"),
    "st-short": ("f.safetensors", lambda: b"\x01\x02", "shorter than"),
    "st-empty": ("f.safetensors", lambda: b"", "shorter than"),
    # .npy
    "npy-empty": ("f.npy", lambda: b"", "damaged .npy header"),
    "npy-bad-magic": ("f.npy", lambda: b"\x93NUMPX\x01\x00" + DATA, "damaged .npy header"),
    "npy-garbage-header": ("f.npy", lambda: _npy_bytes("{'descr': <f4, 'shape': ((", DATA), "damaged .npy header"),
    "npy-code-in-header": ("f.npy", lambda: _npy_bytes(_npy_header(shape="__import__('os').getcwd()"), DATA),
                           "damaged .npy header"),
    "npy-negative-shape": ("f.npy", lambda: _npy_bytes(_npy_header(shape="(-16, 8)"), DATA),
                           "non-negative integers"),
    "npy-truncated": ("f.npy", lambda: _npy_bytes(_npy_header(shape="(160, 8)"), DATA), "truncated"),
    "npy-claims-huge": ("f.npy", lambda: _npy_bytes(_npy_header(shape="(10**9, 10**9)"), DATA),
                        "damaged .npy header"),
    "npy-empty-huge": ("f.npy", lambda: _npy_bytes(_npy_header(shape="(0, 2**62)"), DATA), "damaged .npy header"),
    "npy-empty-huge-literal": ("f.npy", lambda: _npy_bytes(_npy_header(shape=f"(0, {2**62})"), DATA),
                               "larger than any array"),
    "npy-claims-huge-literal": ("f.npy", lambda: _npy_bytes(_npy_header(shape="(1000000000, 1000000000)"), DATA),
                                "larger than any array"),
    "npy-claims-large": ("f.npy", lambda: _npy_bytes(_npy_header(shape="(16, 1000000000)"), DATA), "truncated"),
    "npy-object": ("f.npy", lambda: _npy_bytes(_npy_header(descr="'|O'"), DATA), "Python objects"),
    "npy-structured": ("f.npy", lambda: _npy_bytes(_npy_header(descr="[('a', '<f4'), ('b', '<f4')]",
                                                               shape="(16, 4)"), DATA), "not numbers"),
    "npy-text": ("f.npy", lambda: _npy_bytes(_npy_header(descr="'<U4'", shape="(16, 8)"), DATA * 4),
                 "not numbers"),
    "npy-version-9": ("f.npy", lambda: _npy_bytes(_npy_header(), DATA, version=(9, 0)), "version"),
    "npy-long-header": ("f.npy", lambda: b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**31) + b"{" * 100,
                        "damaged .npy header"),
    # .npz
    "npz-not-zip": ("f.npz", lambda: b"PK\x03\x04 this is not a zip" + DATA, "not a readable zip"),
    "npz-random": ("f.npz", lambda: os.urandom(100), "not a readable zip"),
    "npz-truncated": ("f.npz", lambda: _npz_of(_tokens())[:300], "not a readable zip"),
    "npz-member-garbage": ("f.npz", lambda: _zip_bytes({"tokens.npy": b"garbage" * 20}), "damaged .npy header"),
    "npz-member-claims-huge-C": ("f.npz", lambda: _zip_bytes(
        {"tokens.npy": _npy_bytes(_npy_header(shape="(16, 1000000000)"), DATA)}), "truncated"),
    "npz-member-object": ("f.npz", lambda: _zip_bytes({"tokens.npy": _npy_bytes(_npy_header(descr="'|O'"), DATA)}),
                          "Python objects"),
    "npz-member-corrupt-data": ("f.npz", lambda: _corrupt_deflate(), "damaged"),
    # .pt
    "pt-meta": ("f.pt", lambda: _torch_bytes(_torch().empty(16, 8, device="meta")), "meta tensor"),
    "pt-sparse": ("f.pt", lambda: _torch_bytes(_torch().eye(16)[:, :8].to_sparse()), "sparse tensor"),
    "pt-sparse-csr": ("f.pt", lambda: _torch_bytes(_torch().eye(16)[:, :8].to_sparse_csr()), "sparse tensor"),
    "pt-complex": ("f.pt", lambda: _torch_bytes(_torch().zeros(16, 8, dtype=_torch().complex64)), "dtype"),
    "pt-bool": ("f.pt", lambda: _torch_bytes(_torch().zeros(16, 8, dtype=_torch().bool)), "dtype"),
    "pt-no-tensors": ("f.pt", lambda: _torch_bytes({"a": [1, 2], "b": "text"}), "without tensors"),
    "pt-list": ("f.pt", lambda: _torch_bytes([1, 2, 3]), "not a tensor"),
    # without PyTorch a .pt cannot be opened at all: the sentence says what to install instead
    "pt-garbage": ("f.pt", lambda: os.urandom(200), "weights_only=True" if HAS_TORCH else "needs PyTorch"),
}


def _corrupt_deflate() -> bytes:
    """A compressed .npz whose member header is intact but whose deflate data is not."""
    x = np.random.default_rng(1).normal(size=(16, 8)).astype(np.float32)
    raw = bytearray(_npz_of(x, compressed=True))
    start = raw.index(b"tokens.npy") + len("tokens.npy") + 60  # past the local header and the .npy header
    raw[start:start + 200] = bytes(200)
    return bytes(raw)


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
            for p in sorted(folder.rglob("*"))}


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("embedview: error: "), err
    return lines[0]


@pytest.mark.parametrize("command", ["render", "fit", "similarity"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_feature_file_cli(case, command, tmp_path, capsys):
    name, make, expected = CASES[case]
    path = tmp_path / "in" / name
    path.parent.mkdir()
    path.write_bytes(make())
    before, out = _snapshot(tmp_path), tmp_path / ("out.png" if command == "render" else "basis.npz")
    capsys.readouterr()  # what making the file printed
    point = ["--point", "10,10"] if command == "similarity" else []
    assert main([command, str(path), "-o", str(out), *point, *CLI_GEOMETRY]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(path) in line and expected in line, line
    assert _snapshot(tmp_path) == before  # the input unchanged, nothing written, nothing left


@pytest.mark.parametrize("case", ["npz-member-claims-huge-C", "pt-meta", "pt-sparse", "st-shape-huge"])
def test_hostile_feature_file_api(case, tmp_path):
    name, make, expected = CASES[case]
    path = tmp_path / name
    path.write_bytes(make())
    with pytest.raises(EmbedviewError, match=expected):
        embedview.visualize(embedview.open_features(path, **GEOMETRY), pixel_size=PATCH)


def test_torch_tensors_passed_directly_are_checked():
    torch = _torch()
    for tensor, expected in [(torch.empty(16, 8, device="meta"), "meta tensor"),
                             (torch.eye(16)[:, :8].to_sparse(), "sparse tensor")]:
        with pytest.raises(EmbedviewError, match=expected):
            embedview.from_tokens(tensor, SIZE, PATCH)


def test_good_files_still_read(tmp_path):
    """The checks refuse none of the files numpy, safetensors and torch write."""
    x = _tokens()
    np.save(tmp_path / "a.npy", x)
    np.save(tmp_path / "f.npy", np.asfortranarray(x))
    (tmp_path / "a.npz").write_bytes(_npz_of(x))
    (tmp_path / "c.npz").write_bytes(_npz_of(x, compressed=True))
    (tmp_path / "a.safetensors").write_bytes(_safetensors_bytes({"__metadata__": {"k": "v"}, "x": _good_entry()},
                                                                x.tobytes()))
    ref = embedview.visualize(embedview.open_features(tmp_path / "a.npy", **GEOMETRY), pixel_size=PATCH).rgb
    for name in ["f.npy", "a.npz", "c.npz", "a.safetensors"]:
        vis = embedview.visualize(embedview.open_features(tmp_path / name, **GEOMETRY), pixel_size=PATCH)
        np.testing.assert_array_equal(vis.rgb, ref, err_msg=name)


# ---------------------------------------------------------------------------------------------
# cases that would allocate without bound: in a subprocess under an address-space limit

# plain imports and a small render take ~300 MiB of address space; 2 GiB leaves room, and a
# regression that allocates what the header claims dies at once instead of freezing the machine
ADDRESS_SPACE = 2 * 2**30

_UNDER_LIMIT = textwrap.dedent("""
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
    from embedview.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _run_limited(args, tmp_path):
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env.pop("EMBEDVIEW_MEMORY_LIMIT", None)
    return subprocess.run([sys.executable, "-c", _UNDER_LIMIT.format(limit=ADDRESS_SPACE), *args],
                          capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)


def _legacy_pt_claiming_8_gb() -> bytes:
    """A pre-zip ``torch.save`` file whose storage claims 2**31 - 1 floats (torch allocates them first)."""
    torch = _torch()
    buffer = io.BytesIO()
    torch.save(torch.zeros(123457), buffer, _use_new_zipfile_serialization=False)
    needle = b"J" + struct.pack("<i", 123457)  # the pickled element count (BININT)
    assert needle in buffer.getvalue()
    return buffer.getvalue().replace(needle, b"J" + struct.pack("<i", 2**31 - 1))


#: Only under the limit (one of them is slow to write).
BOMBS = {
    "st-header-huge-list": ("f.safetensors", lambda: _safetensors_bytes(b"[" + b"0," * (8 * 2**20 - 2) + b"0]"),
                            "not a JSON object"),
    "pt-legacy-huge-storage": ("f.pt", _legacy_pt_claiming_8_gb, "could not be loaded with torch.load"),
}


def _wide_tokens(path: Path) -> Path:
    np.save(path, np.ones((16, 100_000), np.float32))  # a real file with 100 000 channels: a 80 GB scatter
    return path


@pytest.mark.parametrize("case", ["npz-member-claims-huge-C", "npy-claims-large", "st-shape-huge", "st-header-huge-list",
                                  "pt-legacy-huge-storage", "wide-tokens"])
def test_memory_bombs_are_refused_under_a_limit(case, tmp_path):
    if case == "wide-tokens":
        path, expected = _wide_tokens(tmp_path / "wide.npy"), "scatter matrix"
    else:
        name, make, expected = {**CASES, **BOMBS}[case]
        path = tmp_path / name
        path.write_bytes(make())
    before = _snapshot(tmp_path)
    done = _run_limited(["render", str(path), "-o", str(tmp_path / "out.png"), *CLI_GEOMETRY], tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    line = _one_error_line(done.stderr)
    # A CUDA build of PyTorch cannot even be imported under the address-space limit: refused all the same.
    assert expected in line or (case.startswith("pt-") and "could not be imported" in line), line
    assert _snapshot(tmp_path) == before


# ---------------------------------------------------------------------------------------------
# Hypothesis: only EmbedviewError escapes, whatever the headers say

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])

_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                       st.text(max_size=6))
_json = st.recursive(_json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(st.text(max_size=4), inner, max_size=4)),
                     max_leaves=12)
_dims = st.integers(-3, 40) | st.sampled_from([0, 1, 8, 16, 2**31, 2**62, 2**64])
#: Shapes that fit the 64×64 image with patch 16 (tokens, batched tokens, maps), or nearly.
_good_shapes = st.sampled_from([(16, 8), (1, 16, 8), (2, 16, 8), (8, 4, 4), (2, 8, 4, 4), (17, 8), (16, 0),
                                (0, 8), (16,), (4, 4), (16, 2)])
_ITEMSIZE = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8}


def _check_only_embedview_errors(path: Path) -> None:
    try:
        src = embedview.open_features(path, **GEOMETRY)
        embedview.visualize(src, pixel_size=PATCH)
    except EmbedviewError:
        pass


@st.composite
def _safetensors_file(draw) -> bytes:
    """Mostly well-formed files, one field at a time bent: the checks deep inside get exercised."""
    header, offset = {}, 0
    if draw(st.booleans()):
        header["__metadata__"] = draw(_json)
    for name in draw(st.sampled_from([["x"], ["x"], ["x", "y"]])):
        dtype = draw(st.sampled_from(list(_ITEMSIZE) * 4 + ["I32", "U8", "f32", None]))
        shape = list(draw(_good_shapes))
        size = math.prod(shape) * _ITEMSIZE.get(dtype if isinstance(dtype, str) else "", 4)
        entry = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
        bend = draw(st.sampled_from([None] * 6 + ["shape", "data_offsets", "drop", "dtype"]))
        if bend == "drop":
            del entry[draw(st.sampled_from(sorted(entry)))]
        elif bend:
            entry[bend] = draw(st.lists(_dims, max_size=5) | _json)
        header[name] = entry
    data = draw(st.binary(min_size=offset, max_size=offset) | st.binary(max_size=offset + 8))
    return _safetensors_bytes(header, data)


_header = st.dictionaries(st.sampled_from(["x", "y", "__metadata__"]) | st.text(max_size=3), _json, max_size=3)


@FUZZ
@given(raw=_safetensors_file() | st.builds(_safetensors_bytes, _header | _json, st.binary(max_size=600)),
       cut=st.integers(0, 30))
def test_fuzz_safetensors_headers(tmp_path_factory, raw, cut):
    raw = raw[:len(raw) - cut] if cut < 10 else raw  # sometimes truncated
    path = tmp_path_factory.mktemp("st") / "f.safetensors"
    path.write_bytes(raw)
    _check_only_embedview_errors(path)


_descr = st.sampled_from(["'<f4'", "'>f8'", "'<f2'", "'|u1'", "'<i8'", "'|O'", "'<U3'", "'|b1'", "'<c8'",
                          "'|V4'", "[('a', '<f4')]", "('<f4', (2,))", "'xyz'", "None", "3", "'<M8[s]'"])
_shape_text = st.one_of(st.lists(_dims, max_size=4).map(lambda s: repr(tuple(s))),
                        st.sampled_from(["()", "[16, 8]", "(16.0, 8)", "((16,), 8)", "(True, 8)", "None", "'16'"]))


@st.composite
def _npy_file(draw) -> bytes:
    """Mostly well-formed .npy streams with one part bent (dtype, order, shape, length, version)."""
    descr = draw(st.sampled_from(["'<f4'", "'>f4'", "'<f8'", "'<f2'", "'<i2'", "'|u1'"] * 3) | _descr)
    shape = draw(_good_shapes)
    try:
        itemsize = np.dtype(eval(descr)).itemsize
    except Exception:
        itemsize = 4
    size = math.prod(shape) * itemsize
    bend = draw(st.sampled_from([None] * 4 + ["shape", "order", "text", "length", "version"]))
    shape_text = draw(_shape_text) if bend == "shape" else repr(shape)
    order = draw(st.sampled_from(["True", "0", "None", "'C'"])) if bend == "order" else "False"
    header = draw(st.text(max_size=60)) if bend == "text" else _npy_header(descr, order, shape_text)
    data = draw(st.binary(max_size=size + 8) if bend == "length" else st.binary(min_size=size, max_size=size))
    version = draw(st.sampled_from([(2, 0), (3, 0), (0, 7)])) if bend == "version" else (1, 0)
    return _npy_bytes(header, data, version)


@FUZZ
@given(raw=st.one_of(_npy_file(), _npy_file(), st.binary(max_size=80)), cut=st.integers(0, 40))
def test_fuzz_npy_headers(tmp_path_factory, raw, cut):
    path = tmp_path_factory.mktemp("npy") / "f.npy"
    path.write_bytes(raw[:len(raw) - cut] if cut < 6 else raw)
    _check_only_embedview_errors(path)


_member_names = st.sampled_from(["tokens.npy"] * 6 + ["a.npy", "b.txt", ".npy", "../x.npy"]) | st.text(
    st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=8)


@FUZZ
@given(members=st.dictionaries(_member_names, _npy_file(), min_size=1, max_size=2),
       compressed=st.booleans(), cut=st.integers(0, 400), flip=st.integers(0, 2000))
def test_fuzz_npz_members(tmp_path_factory, members, compressed, cut, flip):
    raw = bytearray(_zip_bytes(members, zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED))
    if cut < 30:  # truncated
        raw = raw[:max(0, len(raw) - cut)]
    elif cut < 60 and flip < len(raw):  # one byte damaged
        raw[flip] ^= 0x5A
    path = tmp_path_factory.mktemp("npz") / "f.npz"
    path.write_bytes(bytes(raw))
    _check_only_embedview_errors(path)


# ---------------------------------------------------------------------------------------------
# large and tiny finite features: the same picture


def _features(seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, 1, 32, 16, 16)).astype(np.float32) + rng.normal(size=(32, 1, 1)).astype(np.float32)
    x[0, 0, :, 3, 3] *= 50  # a high-norm cell, for the outlier guard
    return x


@pytest.mark.parametrize("device", ["cpu", "torch:cpu"])
def test_large_and_tiny_features_draw_the_same_picture(device):
    if device != "cpu":
        _torch()
    x = _features()
    def draw(f):
        return embedview.visualize(x * np.float32(f), original_size=(256, 256), pixel_size=PATCH,
                                             execution=embedview.Execution(device=device))
    ref = draw(1.0)
    for factor in [2.0**66, 2.0**-66, 2.0**120]:  # powers of two: x·f is exact, and so is the picture
        np.testing.assert_array_equal(draw(factor).rgb, ref.rgb, err_msg=str(factor))
    for factor in [1e20, 1e-20]:  # x·f rounds in float32: a few cells may move by one level
        diff = np.abs(draw(factor).rgb.astype(int) - ref.rgb.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.02, factor


@pytest.mark.parametrize("device", ["cpu", "torch:cpu"])
def test_float64_features_beyond_float32_draw_the_same_picture(device, tmp_path):
    """float64 around 1e-300 would flush to 0 in float32 (grey), around 1e300 overflow (refused as
    infinite): each source is scaled by a power of two before the cast, exactly."""
    if device != "cpu":
        _torch()
    x = _features().astype(np.float64)
    def draw(f):
        return embedview.visualize(x * f, original_size=(256, 256), pixel_size=PATCH,
                                   execution=embedview.Execution(device=device))
    ref = draw(1.0)
    for factor in [2.0**-1000, 2.0**1000, 2.0**-200, 2.0**200]:
        np.testing.assert_array_equal(draw(factor).rgb, ref.rgb, err_msg=str(factor))
    for factor in [1e-300, 1e300]:  # x·f rounds in float64: the same picture to a level
        assert np.abs(draw(factor).rgb.astype(int) - ref.rgb.astype(int)).max() <= 1, factor
    tokens = _tokens().astype(np.float64)  # a feature file: the same, through the CLI
    np.save(tmp_path / "one.npy", tokens)
    np.save(tmp_path / "tiny.npy", tokens * 2.0**-1010)
    for name in ("one", "tiny"):
        assert main(["render", str(tmp_path / f"{name}.npy"), "-o", str(tmp_path / f"{name}.npy.png"),
                     "--device", device, *CLI_GEOMETRY]) == 0
    from PIL import Image

    pictures = [np.asarray(Image.open(tmp_path / f"{name}.npy.png")) for name in ("one", "tiny")]
    np.testing.assert_array_equal(pictures[0], pictures[1])
    x[1, 0, :, 5, 5] = np.inf  # a genuinely infinite cell is still refused as such
    with pytest.raises(EmbedviewError, match=r"^1 cells of slice 1 .* NaN or infinite"):
        draw(1e300)


def test_a_basis_of_scaled_float64_features_reads_other_inputs_at_its_scale(tmp_path):
    """The basis records the power of two its features were read with (also in its file), so it
    draws another input (here the same features, at another magnitude in its first piece) alike."""
    x = _features().astype(np.float64) * 2.0**-1000
    model = embedview.PCA().fit(x, original_size=(256, 256))
    assert model.basis_.feature_scale > 2.0**990
    again = model.transform(x, original_size=(256, 256), pixel_size=PATCH)
    np.testing.assert_array_equal(again.rgb, model.fit_transform(x, original_size=(256, 256), pixel_size=PATCH)[0].rgb)
    other = x.copy()
    other[0] *= 4.0  # its own first piece would choose another scale
    loaded = embedview.PCA.load(model.save(tmp_path / "b.npz"))
    assert loaded.basis_.feature_scale == model.basis_.feature_scale
    vis = loaded.transform(other, original_size=(256, 256), pixel_size=PATCH)
    np.testing.assert_array_equal(vis.rgb[1], again.rgb[1])  # slice 1 is the same data: the same colours
    _rewrite(tmp_path / "b.npz", meta={"feature_scale": 3.0})
    with pytest.raises(EmbedviewError, match="feature_scale 3.0 is not a power of two"):
        embedview.PCA.load(tmp_path / "b.npz")


def test_large_features_with_nan_cells_count_only_those(tmp_path, capsys):
    x = _features() * np.float32(1e20)
    x[1, 0, :, 5, 5] = np.nan
    with pytest.raises(EmbedviewError, match=r"^1 cells of slice 1 .* NaN or infinite"):
        embedview.visualize(x, original_size=(256, 256), pixel_size=PATCH)
    vis, = embedview.PCA(nonfinite="omit").fit_transform(x, original_size=(256, 256), pixel_size=PATCH)
    assert vis.rgb.any()
    big = _tokens() * np.float32(1e20)
    np.save(tmp_path / "big.npy", big)
    assert main(["render", str(tmp_path / "big.npy"), "-o", str(tmp_path / "o.png"), *CLI_GEOMETRY]) == 0
    big[3] = np.nan
    np.save(tmp_path / "big_nan.npy", big)
    capsys.readouterr()
    assert main(["render", str(tmp_path / "big_nan.npy"), "-o", str(tmp_path / "n.png"), *CLI_GEOMETRY]) == 2
    assert _one_error_line(capsys.readouterr().err).startswith("embedview: error: 1 cells of")
    assert main(["render", str(tmp_path / "big_nan.npy"), "-o", str(tmp_path / "n.png"), "--omit-nonfinite",
                 *CLI_GEOMETRY]) == 0


def test_partial_accumulators_of_large_features_merge_exactly():
    """The merge path (Dask, several inputs) adds partial sums of rescaled pieces in float64."""
    x = _features()[:, 0].reshape(2, 32, -1)
    big = x * np.float32(2.0**70)
    whole, a, b = Accumulator(32), Accumulator(32), Accumulator(32)
    for piece in big:
        assert whole.add(piece)
    assert a.add(big[0])
    b.shift = a.shift
    assert b.add(big[1])
    merged = a.merge(b).basis(3)
    small = Accumulator(32)
    for piece in x:
        small.add(piece)
    np.testing.assert_array_equal(merged.components, whole.basis(3).components)
    np.testing.assert_array_equal(merged.components, small.basis(3).components)
    np.testing.assert_array_equal(merged.mean, small.basis(3).mean * 2.0**70)


def test_nonfinite_cells_are_still_refused_by_the_accumulator():
    acc = Accumulator(4)
    assert not acc.add(np.array([[np.inf, 1], [1, 1], [1, 1], [1, 1]], np.float32))
    assert not acc.add(np.full((4, 3), np.nan, np.float32))
    assert acc.count == 0 and acc.shift is None


# ---------------------------------------------------------------------------------------------
# basis files


def _basis_path(tmp_path: Path) -> Path:
    acc = Accumulator(6)
    acc.add(np.random.default_rng(0).normal(size=(6, 200)).astype(np.float32))
    basis = acc.basis(3).with_ranges([-1.0, -2.0, 0.0], [1.0, 2.0, 0.0])  # the last: a flat channel
    return save_basis(tmp_path / "basis.npz", basis, normalize="robust", fitted_on=["a.zarr"])


def _rewrite(path: Path, **changes) -> None:
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(arrays["metadata"].tobytes())
    meta.update(changes.pop("meta", {}))
    arrays.update(changes)
    arrays["metadata"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _skewed(components):
    out = components.copy()
    out[1] += 0.01 * out[0]
    return out


BASIS_DAMAGE = {
    "lo-above-hi": (lambda b: {"lo": np.array([2.0, -2.0, 0.0])}, "colour range of component 0 runs from 2 to 1"),
    "lo-equals-hi": (lambda b: {"lo": np.array([-1.0, 2.0, 0.0])}, "component 1 runs from 2 to 2"),
    "zero-component": (lambda b: {"components": np.vstack([b.components[:2], np.zeros(6)])}, "component 2 is all zeros"),
    "not-orthonormal": (lambda b: {"components": _skewed(b.components)}, "not orthonormal"),
    "not-unit": (lambda b: {"components": b.components * 2}, "not orthonormal"),
    "negative-samples": (lambda b: {"meta": {"n_samples": -5}}, "n_samples -5"),
    "negative-outliers": (lambda b: {"meta": {"n_outliers": -1}}, "n_outliers -1"),
    "nan-reference": (lambda b: {"meta": {"scale_reference": float("nan")}}, "scale_reference nan"),
    "negative-variance": (lambda b: {"explained_variance": -b.explained_variance}, "negative values"),
    "mismatched-k": (lambda b: {"lo": np.zeros(2)}, "inconsistent"),
    "mismatched-c": (lambda b: {"mean": np.zeros(5)}, "inconsistent"),
    "no-components": (lambda b: {"components": np.zeros((0, 6))}, "inconsistent"),
    # ranges no cell reaches (the picture: black or one colour), or beyond float32 (black)
    "huge-ranges": (lambda b: {"lo": np.array([-1e308, -2.0, 0.0]), "hi": np.array([1e308, 2.0, 0.0])},
                    "colour ranges reaches 1e\\+308, beyond what a float32 picture holds"),
    "far-ranges": (lambda b: {"hi": np.array([1e6, 2.0, 0.0])}, "far beyond the features' scale"),
    "huge-mean": (lambda b: {"mean": np.full(6, 1e300)}, "mean reaches 1e\\+300"),
    "ratios-above-one": (lambda b: {"explained_variance_ratio": np.array([0.9, 0.9, 0.1])}, "add up to more than 1"),
}


@pytest.mark.parametrize("case", sorted(BASIS_DAMAGE))
def test_damaged_basis_is_refused(case, tmp_path):
    path = _basis_path(tmp_path)
    basis, _ = load_basis(path)  # the undamaged file, with its flat channel, loads
    changes, expected = BASIS_DAMAGE[case]
    _rewrite(path, **changes(basis))
    with pytest.raises(EmbedviewError, match=expected) as err:
        load_basis(path)
    message = str(err.value)
    assert str(path) in message and message.endswith("fit it again with `embedview fit`.")


def _foreground_basis_path(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 6, 16, 16)).astype(np.float32)
    x[0, :, 4:9, 4:9] += 8  # a bright square: the foreground
    return embedview.PCA(3).fit(x, original_size=(64, 64), foreground="auto").save(tmp_path / "fg.npz")


FOREGROUND_DAMAGE = {
    "nan-threshold": ({"threshold": float("nan")}, "threshold is nan, not a finite number"),
    "inf-threshold": ({"threshold": float("inf")}, "threshold is inf"),
    "far-threshold": ({"threshold": 1e9}, "threshold reaches 1e\\+09, far beyond the features' scale"),
    "string-threshold": ({"threshold": "a"}, "threshold is 'a'"),
    "zero-components": ({"components": np.zeros((3, 6)).tolist()}, "component 0 is all zeros"),
    "skewed-components": ({"components": (2 * np.eye(3, 6)).tolist()}, "not orthonormal"),
    "zero-fraction": ({"fraction": 0.0}, "fraction 0.0 is not a share"),
    "bad-side": ({"side": "left"}, "foreground rule in .* is damaged; fit the basis again"),
    "nan-mean": ({"mean": [float("nan")] * 6}, "foreground rule in .* is damaged; fit the basis again"),
}


@pytest.mark.parametrize("case", sorted(FOREGROUND_DAMAGE))
def test_damaged_foreground_rule_is_refused(case, tmp_path, capsys):
    """A threshold that is NaN, infinite or beyond any cell, zero components: black pictures, refused."""
    path = _foreground_basis_path(tmp_path)
    assert embedview.PCA.load(path).selections_[0].rule.side in ("above", "below")  # undamaged: loads
    with np.load(path, allow_pickle=False) as data:
        rule = json.loads(data["metadata"].tobytes())["foreground"]
    changes, expected = FOREGROUND_DAMAGE[case]
    _rewrite(path, meta={"foreground": {**rule, **changes}})
    with pytest.raises(EmbedviewError, match=expected) as err:
        embedview.PCA.load(path)
    assert str(err.value).endswith("fit the basis again (embedview fit --foreground auto).")
    features = tmp_path / "f.npy"
    np.save(features, _tokens())
    err = _one_error_line(_cli_fails(capsys, "render", features, "--basis", path, "-o", tmp_path / "o.png",
                                     *CLI_GEOMETRY))
    assert "foreground rule in" in err and not (tmp_path / "o.png").exists()


def _cli_fails(capsys, *argv) -> str:
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 2
    return capsys.readouterr().err


def test_basis_member_claiming_a_huge_array_is_refused_under_a_limit(tmp_path):
    path = _basis_path(tmp_path)
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    members["mean.npy"] = _npy_bytes(_npy_header(descr="'<f8'", shape="(4000000000,)"), bytes(48))
    path.write_bytes(_zip_bytes(members, zipfile.ZIP_DEFLATED))
    features = tmp_path / "f.npy"
    np.save(features, np.random.default_rng(0).normal(size=(16, 6)).astype(np.float32))
    before = _snapshot(tmp_path)
    done = _run_limited(["render", str(features), "--basis", str(path), "-o", str(tmp_path / "o.png"),
                         *CLI_GEOMETRY], tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "headers of its arrays do not match" in _one_error_line(done.stderr)
    assert _snapshot(tmp_path) == before


def test_damaged_basis_through_the_cli(tmp_path, capsys):
    path = _basis_path(tmp_path)
    _rewrite(path, lo=np.array([2.0, -2.0, 0.0]))
    features = tmp_path / "f.npy"
    np.save(features, np.random.default_rng(0).normal(size=(16, 6)).astype(np.float32))
    before = _snapshot(tmp_path)
    assert main(["render", str(features), "--basis", str(path), "-o", str(tmp_path / "o.png"),
                 *CLI_GEOMETRY]) == 2
    assert "colour range of component 0" in _one_error_line(capsys.readouterr().err)
    assert _snapshot(tmp_path) == before


# ---------------------------------------------------------------------------------------------
# image files claiming more pixels than they hold: checked from the header, never decoded


def _tiff_claiming(path: Path, side: int) -> Path:
    """A 300-byte compressed TIFF whose header claims ``side`` × ``side`` pixels."""
    import tifffile

    tifffile.imwrite(path, np.zeros((64, 64), np.uint8), compression="zlib", metadata=None)
    with tifffile.TiffFile(path, mode="r+b") as tif:
        for tag in ("ImageWidth", "ImageLength", "RowsPerStrip"):
            tif.pages[0].tags[tag].overwrite(side)
    return path


def _png_claiming(path: Path, side: int) -> Path:
    """A tiny PNG whose IHDR claims ``side`` × ``side`` pixels (its CRC mended)."""
    import zlib

    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path)
    raw = bytearray(path.read_bytes())
    raw[16:24] = struct.pack(">II", side, side)
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])))
    path.write_bytes(bytes(raw))
    return path


def _embeddings_of(tmp_path: Path, size: int) -> Path:
    from embedview._inputs.micro_sam_layout import write_micro_sam_embeddings

    tmp_path.mkdir()
    return write_micro_sam_embeddings(tmp_path / "e.zarr", _features()[0], original_size=(size, size))


@pytest.mark.parametrize("make", [_tiff_claiming, _png_claiming])
def test_an_image_claiming_a_huge_size_is_refused_from_its_header(make, tmp_path, capsys, monkeypatch):
    """49152² pixels claimed by a few hundred bytes: refused before decoding (2.4 GiB), for another
    shape than the embeddings' and, for the right one, against the memory limit or Pillow's bomb limit."""
    image = make(tmp_path / f"big{'.tif' if make is _tiff_claiming else '.png'}", 49152)
    small, big = _embeddings_of(tmp_path / "s", 256), _embeddings_of(tmp_path / "b", 49152)
    before = _snapshot(tmp_path)
    err = _one_error_line(_cli_fails(capsys, "render", small, "--image", image, "-o", tmp_path / "o.png"))
    assert ("has shape [49152, 49152] but the embeddings describe an image of shape [256, 256]" in err
            or "claims 2,415,919,104 pixels, more than Pillow decodes safely" in err)
    monkeypatch.setenv("EMBEDVIEW_MEMORY_LIMIT", "1G")
    err = _one_error_line(_cli_fails(capsys, "render", big, "--image", image, "-o", tmp_path / "o.png"))
    assert ("decoding the image" in err and "more than the 1.0 GiB allowed" in err) or "more than Pillow decodes" in err
    assert _snapshot(tmp_path) == before


def test_a_large_png_gives_no_pillow_warning(tmp_path):
    """Pillow's decompression-bomb warning (above 89 M pixels) is not shown: the size is checked by embedview."""
    import warnings

    from embedview._outputs.io import image_header

    path = _png_claiming(tmp_path / "p.png", 10000)  # 100 M pixels: Pillow would warn
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert image_header(path)[0] == (10000, 10000)
