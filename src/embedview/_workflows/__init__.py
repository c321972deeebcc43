"""Workflows the front-ends share: render commands, the figure, info, the demo, similarity maps."""
