"""Settings that cannot take effect are refused, not ignored (issue 16).

With ``--basis`` the fit's flags (``--components``, ``--fit``, ``--normalize``, ``--fit-sample``,
``--keep-outliers``) describe a fit that does not happen: each is refused with one sentence,
exit 2, nothing written, even when it names the default value ("given" means given, not "differs
from the default"). Flags that act on drawing (``--omit-nonfinite``, ``--mask``, ``--pixel-size``)
apply. The API refuses the same combinations (``PCA.load(path, normalize=...)``).
"""

import warnings

import numpy as np
import pytest

import embedview
from _cli import run_fails, run_ok
from embedview import EmbedviewError

from _fixtures import DATA

EMB = DATA / "2d.zarr"


@pytest.fixture(scope="module")
def basis(tmp_path_factory):
    folder = tmp_path_factory.mktemp("basis")
    path = folder / "b.npz"
    embedview.PCA().fit(EMB).save(path)
    return path


@pytest.mark.parametrize("flags", [("--normalize", "channel"), ("--normalize", "global"), ("--normalize", "robust"),
                                   ("--fit-sample", "5000"), ("--components", "3"), ("--fit", "joint"),
                                   ("--keep-outliers",)],
                         ids=lambda f: " ".join(f))
def test_a_fit_flag_with_basis_is_refused(tmp_path, capsys, basis, flags):
    err = run_fails(capsys, tmp_path, "render", EMB, "-o", tmp_path / "o.png", "--basis", basis, *flags)
    assert flags[0] in err and "--basis" in err and "cannot apply" in err


def test_fit_flags_together_are_named_in_one_sentence(tmp_path, capsys, basis):
    err = run_fails(capsys, tmp_path, "render", EMB, "-o", tmp_path / "o.png", "--basis", basis,
                    "--components", "3", "--normalize", "channel")
    assert "--components and --normalize cannot apply; drop them" in err


def test_drawing_flags_with_basis_apply(tmp_path, capsys, basis):
    run_ok(capsys, "render", EMB, "-o", tmp_path / "a.png", "--basis", basis, "--pixel-size", "8",
           "--omit-nonfinite", "-q")
    expected = embedview.PCA.load(basis).transform(EMB, pixel_size=8)
    np.testing.assert_array_equal(embedview.read_image(tmp_path / "a.png"), expected.rgb)


def test_left_out_flags_take_the_estimators_defaults(tmp_path, capsys):
    run_ok(capsys, "fit", EMB, "-o", tmp_path / "b.npz", "-q")
    loaded = embedview.PCA.load(tmp_path / "b.npz")
    assert loaded.n_components == embedview.PCA().n_components and loaded.normalize == embedview.PCA().normalize
    run_ok(capsys, "fit", EMB, "-o", tmp_path / "c.npz", "-q", "--normalize", "global", "--components", "4")
    loaded = embedview.PCA.load(tmp_path / "c.npz")
    assert (loaded.n_components, loaded.normalize) == (4, "global")


def test_api_refuses_a_fit_parameter_with_a_fitted_basis(basis):
    for name, value in (("normalize", "channel"), ("fit_sample", 2000), ("n_components", 3), ("outliers", "keep")):
        with pytest.raises(EmbedviewError, match=f"{name}= describes a fit"):
            embedview.PCA.load(basis, **{name: value})
    with pytest.raises(EmbedviewError, match="unexpected keyword"):
        embedview.PCA.load(basis, colour="red")
    with pytest.raises(EmbedviewError, match="a basis file is given by its path"):
        embedview.PCA.load(None)
    model = embedview.PCA.load(basis)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # visualize(basis=) is deprecated, still checked
        with pytest.raises(EmbedviewError, match="normalize='global' describes a fit"):
            embedview.visualize(EMB, basis=model.basis_, normalize="global")


def test_bad_settings_objects_are_refused_in_one_sentence():
    for bad in ("abc", (0, "x"), (0.5,), 3):
        with pytest.raises(EmbedviewError, match="rgb_components"):
            embedview.visualize(EMB, rgb_components=bad)
    with pytest.raises(EmbedviewError, match="overwrite must be True or False"):
        embedview.Output("a.png", overwrite="yes")
    with pytest.raises(EmbedviewError, match="not a parameter of PCA"):
        embedview.PCA().set_params(components=3)
    with pytest.raises(EmbedviewError, match="Output objects"):
        embedview.PCA().run([EMB], embedview.Draw(), ["x.zarr"])
