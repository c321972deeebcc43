"""The model: the streaming PCA fit, its basis files, colours, sample selection, engines, clusters."""
