"""Make docs/napari_screenshot.png: the plugin on the tiled2d fixture, as the screenshot test does.

    python docs/make_napari_screenshot.py            # starts a virtual display if there is none

Needs the napari extra (``pip install -e ".[test,napari]"``) and Xvfb on a headless machine.
The picture is made by ``tests/_napari_screenshot.py``, the same code as
``tests/test_napari.py::test_overlay_lies_over_the_image_on_screen``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "micro_sam"


def main(out: Path = ROOT / "docs" / "napari_screenshot.png") -> Path:
    display = None
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        from pyvirtualdisplay import Display  # installed with pytest-xvfb (the napari extra)

        display = Display(visible=False, size=(1600, 1000)).start()
    try:
        from PIL import Image

        sys.path.insert(0, str(ROOT / "tests"))  # the screenshot helper is test code, beside the tests
        from _napari_screenshot import frame, show_overlay

        image = np.load(DATA / "tiled2d_image.npy")
        viewer, _widget, _overlay = show_overlay(image, DATA / "tiled2d.zarr")
        try:
            frame(viewer, image.shape, margin=0.04)
            Image.fromarray(viewer.screenshot(canvas_only=False, flash=False)).save(out)
        finally:
            viewer.close()
    finally:
        if display is not None:
            display.stop()
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
