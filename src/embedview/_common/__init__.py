"""Foundations every layer shares: errors, limits, threads, progress, paths, the exact geometry."""
