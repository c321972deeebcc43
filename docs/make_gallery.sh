#!/usr/bin/env bash
# Remake the README's pictures with the very commands the README shows (run from the repository root).
set -euo pipefail
work="$(mktemp -d)"
docs="$(pwd)/docs"
out="$docs/gallery"
mkdir -p "$out"
cd "$work"
embedview demo -o demo -q
embedview render demo/embeddings.zarr -o foreground.png --foreground auto --image demo/image.png -q
embedview render demo/embeddings.zarr -o clusters.png --clusters 5 --image demo/image.png -q
embedview similarity demo/embeddings.zarr --point 441,747 -o similarity.png --image demo/image.png -q
embedview render demo/embeddings.zarr demo/tiled_embeddings.zarr -o compare -q
embedview render demo/embeddings.zarr -o nearest.png --pixel-size 1 -q
embedview render demo/embeddings.zarr -o bilinear.png --pixel-size 1 --upsample bilinear -q
embedview render demo/embeddings.zarr -o guided.png --pixel-size 1 --upsample guided --image demo/image.png -q
embedview render demo/stack_embeddings.zarr -o stack.gif --image demo/stack.tif --upsample guided -q
embedview render demo/stack_embeddings.zarr -o stack_montage.png --montage 4 --image demo/stack.tif -q
# the row nearest | bilinear | guided (one crop of the same cells), and every other frame of the movie
python - "$out" <<'PY'
import sys
import numpy as np
from PIL import Image
gap = lambda h, w=8: np.full((h, w, 3), 255, np.uint8)
crops = [np.asarray(Image.open(f"{m}.png"))[230:470, 640:960] for m in ("nearest", "bilinear", "guided")]
row = np.concatenate([crops[0], gap(240), crops[1], gap(240), crops[2]], axis=1)
Image.fromarray(row).save(f"{sys.argv[1]}/upsample.png", optimize=True)
movie = Image.open("stack.gif")
frames = []
for i in range(0, movie.n_frames, 2):
    movie.seek(i)
    frames.append(np.asarray(movie.convert("RGB").reduce(2)))
strip = np.concatenate(sum(([f, gap(f.shape[0])] for f in frames), [])[:-1], axis=1)
Image.fromarray(strip).save(f"{sys.argv[1]}/movie_frames.png", optimize=True)
PY
cp demo/pca_figure.png "$docs/demo_figure.png"
cp foreground_figure.png clusters_figure.png similarity_figure.png "$out/"
cp compare/side_by_side.png "$out/compare.png"
cp stack_montage.png "$out/montage.png"
rm -rf "$work"
echo "wrote $docs/demo_figure.png and $out"
