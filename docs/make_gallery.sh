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
cp demo/pca_figure.png "$docs/demo_figure.png"
cp foreground_figure.png clusters_figure.png similarity_figure.png "$out/"
cp compare/side_by_side.png "$out/compare.png"
rm -rf "$work"
echo "wrote $docs/demo_figure.png and $out"
