"""Inputs: every file format and array layout, opened as a Source of Pieces on one cell grid."""
