"""``encode``: an image through an encoder into micro_sam's container, block by block.

The blocks are the image's slices times its tiles (micro_sam's order: slice by slice, tiles in C
order, each tile grown by its halo). A thread reads and prepares the next batches while the model
runs (:func:`_batches`); at most ``batch_size × (AHEAD + 1)`` blocks are in memory, and each
batch's features are written as soon as they are computed, so a big image is encoded in bounded
memory. The ``data_signature`` (SHA-1 of the image array's bytes, micro_sam's) is hashed band by
band in another thread meanwhile. The file is written under a temporary name and moved into place
when complete (an error or Ctrl-C leaves nothing).
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from .._common.errors import EmbedviewError, arg
from .._common.geometry import Tiling
from .._common.progress import progress_bar
from .._inputs.vit_geometry import pair
from .images import Image, open_image

#: Batches prepared ahead of the one the model runs on.
AHEAD = 2


def encode(image, model, *, checkpoint=None, ndim: int | None = None, tile_shape=None, halo=None, device=None,
           output=None, batch_size: int = 1, progress: bool = False, overwrite: bool = False, layer=None):
    """Compute the embeddings of ``image`` with ``model``, as micro_sam lays them out.

    Parameters
    ----------
    image : str, os.PathLike or array-like
        ``.npy``, ``.tif``/``.tiff`` (big and multi-page ones read by windows), PNG/JPEG, a zarr
        array or OME-Zarr image, or an array; grey or RGB (``(H, W)``, ``(H, W, C)``), or a stack.
    model : str or Encoder
        A SAM-family name as micro_sam names it (``"vit_b"``, ``"vit_t"``, ``"vit_b_lm"``, ...; weights
        from micro_sam's cache or ``checkpoint``), ``"timm:NAME"``, ``"hf:ORG/NAME"``,
        ``"hub:OWNER/REPO:ENTRY"`` (:mod:`~embedview._encode.families`), or an :class:`embedview.Encoder`.
    checkpoint : str or os.PathLike, optional
        The weights file (loaded with ``torch.load(weights_only=True)``).
    ndim : {2, 3}, optional
        micro_sam's: 3 for a stack ``(Z, H, W[, C])``; default from the shape
        (:func:`~embedview._encode.images.open_image`).
    tile_shape, halo : (int, int), optional
        Tiles and their overlap, as micro_sam tiles (``halo`` defaults to ``(0, 0)``).
    device : {"cpu", "cuda", "mps"}, optional
        Default: a GPU if PyTorch sees one, else the CPU.
    output : str, os.PathLike or Output, optional
        A ``.zarr`` folder to write (an :class:`embedview._run.settings.Output` brings its
        ``overwrite``); default: kept in memory.
    batch_size : int
        Blocks per forward pass.
    progress : bool
        A progress bar over the blocks on stderr.
    overwrite : bool
        Replace ``output`` even where it is not embeddings embedview wrote (a folder embedview did
        not write, e.g. micro_sam's own file, is never replaced).
    layer : int, optional
        A block's features instead of the final ones (negative from the end; recorded as the root
        attribute ``layer``), for a model given by name (:mod:`~embedview._encode.families`).

    Returns
    -------
    Source
        What every part of embedview takes (``visualize``, ``PCA.fit``, ``render``): the file
        written, or the embeddings in memory.
    """
    from .._inputs.micro_sam_layout import from_group, open_container
    from .._run.settings import Output

    if isinstance(output, Output):
        output, overwrite = output.path, output.overwrite or overwrite
    img = open_image(image, ndim)
    tiling = _tiling(img, tile_shape, halo)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise EmbedviewError(f"{arg('batch_size', batch_size)} is not a positive whole number.")
    if output is not None:
        from .._common.output_paths import check_output

        if not str(output).lower().endswith(".zarr"):
            raise EmbedviewError(f"embeddings are written as a .zarr folder (micro_sam's container); end {output} "
                                 "with .zarr.", param="output")
        check_output(output, inputs=[("the image", img.path), ("the checkpoint", checkpoint)], kind="embeddings",
                     overwrite=overwrite)
    from .models import resolve_encoder

    encoder = resolve_encoder(model, checkpoint, device, layer=layer)
    import zarr

    if output is None:
        root = zarr.open_group(zarr.storage.MemoryStore(), mode="w", zarr_format=3)
        _encode_into(root, img, tiling, encoder, batch_size, progress)
        return from_group(root, name=f"the embeddings of {img.name}")
    from .._common.output_paths import atomic_path

    with atomic_path(output, directory=True, kind="embeddings", overwrite=overwrite) as tmp:
        root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        _encode_into(root, img, tiling, encoder, batch_size, progress)
    return open_container(str(output))


def _tiling(img: Image, tile_shape, halo) -> Tiling | None:
    if tile_shape is None:
        if halo is not None:
            raise EmbedviewError(f"{arg('halo', halo)} is the overlap of tiles; pass {arg('tile_shape', form='H,W')} "
                                 "too (or neither).")
        return None
    tile = pair(tile_shape, arg("tile_shape"))
    margin = (0, 0) if halo is None else _halo(halo)
    if tile[0] >= img.shape[0] and tile[1] >= img.shape[1]:
        raise EmbedviewError(f"{arg('tile_shape', list(tile))} is not smaller than the {img.shape[0]}×{img.shape[1]} "
                             f"image, so there is nothing to tile; leave {arg('tile_shape')} and {arg('halo')} out.")
    return Tiling(img.shape, tile, margin)


def _halo(halo) -> tuple[int, int]:
    values = (halo, halo) if isinstance(halo, int) else tuple(halo)
    if len(values) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise EmbedviewError(f"{arg('halo', halo)} is not a whole number ≥ 0 or a (y, x) pair of them.")
    return values


def _encode_into(root, img: Image, tiling, encoder, batch_size: int, progress: bool) -> None:
    from .._inputs.micro_sam_layout import ContainerWriter
    from .encoder import require_torch
    from .models import layout_attributes

    torch = require_torch()
    zs = [None] if img.n_slices is None else range(img.n_slices)
    tiles = [None] if tiling is None else range(tiling.n_tiles)
    blocks = [(z, t) for z in zs for t in tiles]
    outer = {t: (((0, img.shape[0]), (0, img.shape[1])) if t is None else tiling.outer(t)) for t in tiles}
    input_sizes = {t: encoder.input_size(tuple(b - a for a, b in outer[t])) for t in tiles}

    def prepare(batch):
        return [encoder.prepare(img.block(z, *outer[t])) for z, t in batch]

    bar = progress_bar(len(blocks), progress, desc="encoding")
    writer = None
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=2) as pool:
        signature = pool.submit(_signature, img, stop)
        try:
            for batch, prepared in _batches(pool, blocks, batch_size, prepare):
                with torch.inference_mode():
                    features = encoder.forward(prepared).float().cpu().numpy()
                if writer is None:
                    writer = ContainerWriter(root, img.shape, img.n_slices, tiling, features.shape[1],
                                             features.shape[2:], input_sizes)
                for (z, t), f in zip(batch, features):
                    writer.write(z, t, f)
                bar.update(len(batch))
            data_signature = signature.result()
        finally:
            stop.set()  # after an error or Ctrl-C the hashing thread ends at its next band
            bar.close()
    writer.finish(data_signature=data_signature, model_type=encoder.model_type, model_name=encoder.name,
                  micro_sam_version=_micro_sam_version(), model_hash=encoder.model_hash, encoder=encoder.describe())
    root.attrs.update(layout_attributes(encoder, img.n_slices, tiling is not None, features.shape[1]))


def _batches(pool, blocks, batch_size, prepare):
    """``(batch, prepared)`` in order, the next :data:`AHEAD` batches read and prepared meanwhile."""
    batches = [blocks[i:i + batch_size] for i in range(0, len(blocks), batch_size)]
    queue = deque(pool.submit(prepare, b) for b in batches[:AHEAD])
    for i, batch in enumerate(batches):
        prepared = queue.popleft().result()
        if i + AHEAD < len(batches):
            queue.append(pool.submit(prepare, batches[i + AHEAD]))
        yield batch, prepared


def _signature(img: Image, stop) -> str | None:
    """micro_sam's ``_compute_data_signature``: SHA-1 of the array's bytes in C order."""
    h = hashlib.sha1()
    for band in img.bands():
        if stop.is_set():
            return None
        h.update(band)
    return h.hexdigest()


def _micro_sam_version() -> str | None:
    """The installed micro_sam's version (it compares it when reusing the file), else None."""
    from importlib import metadata

    try:
        return metadata.version("micro_sam")
    except metadata.PackageNotFoundError:
        return None
