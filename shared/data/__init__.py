"""The data: the CDC schema, reading and checking CSVs, the synthetic generator, the datasets."""
