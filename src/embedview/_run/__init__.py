"""Running: the one pipeline, its executors (local, Dask), the estimator, visualize and similarity."""
