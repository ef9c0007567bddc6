"""The queries of experiments, training runs, tags, the search and saved searches."""
