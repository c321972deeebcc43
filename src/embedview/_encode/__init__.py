"""Computing embeddings from an image: encoders that declare their preprocessing, and ``encode``.

- :mod:`.encoder`: :class:`~.encoder.Encoder`, any torch module with the declaration of how it
  maps an image block to its input (:class:`~embedview._inputs.vit_geometry.Preprocess`, mean,
  std, patch size, prefix tokens); the cells' grid is derived from that declaration.
- :mod:`.sam`: SAM and its descendants by micro_sam's names (``vit_b``, ``vit_t``, ``vit_b_lm``, ...).
- :mod:`.models`: a model name (micro_sam's, or ``FAMILY:NAME``: :mod:`.families`, :mod:`.timm_family`,
  :mod:`.hf_family`, :mod:`.hub_family`; :mod:`.layers` for SAM's blocks) or an
  :class:`~.encoder.Encoder` to an encoder ready to run, and the layout it writes.
- :mod:`.images`: the image to encode, read by windows (``.npy``, TIFF, PNG/JPEG, zarr, arrays).
- :mod:`.run`: :func:`~.run.encode`: blocks (slices × tiles) read ahead, batched through the
  encoder, written in micro_sam's container layout.

Above ``_run``/``_outputs``/``_inputs``, below ``_workflows``. torch and the model libraries are
imported only inside the functions that run a model.
"""
