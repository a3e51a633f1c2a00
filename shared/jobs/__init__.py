"""Training jobs: records in Redis changed only by compare-and-set scripts, and the runner that
moves one job through them in a worker."""
