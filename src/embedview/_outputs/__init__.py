"""Outputs: placing projected cells on the output grid, and writing pictures (PNG, TIFF, OME-Zarr)."""
