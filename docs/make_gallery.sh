#!/usr/bin/env bash
# Remake the README's gallery with the very commands the README shows (run from the repository root).
set -euo pipefail
work="$(mktemp -d)"
out="$(pwd)/docs/gallery"
mkdir -p "$out"
cd "$work"
embedview demo -o demo -q
embedview demo -o demo2 --seed 3 -q
embedview render demo/demo_embeddings.zarr -o foreground.png --foreground auto --image demo/demo_image.png -q
embedview render demo/demo_embeddings.zarr -o clusters.png --clusters 4 --image demo/demo_image.png -q
embedview similarity demo/demo_embeddings.zarr --point 150,620 -o similarity.png --image demo/demo_image.png -q
embedview fit demo/demo_embeddings.zarr demo2/demo_embeddings.zarr -o basis.npz -q
embedview render demo2/demo_embeddings.zarr -o demo2_pca.png --basis basis.npz -q
embedview render demo/demo_embeddings.zarr demo2/demo_embeddings.zarr -o compare -q
cp foreground_figure.png clusters_figure.png similarity_figure.png "$out/"
cp compare/side_by_side.png "$out/compare.png"
rm -rf "$work"
echo "wrote $out"
