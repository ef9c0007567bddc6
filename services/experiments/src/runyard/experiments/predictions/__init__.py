"""The prediction log of model versions: ingestion, monthly partitions, reads, stats and drift."""
