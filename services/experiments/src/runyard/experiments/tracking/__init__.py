"""Experiments and their lifecycle, training runs, tags, search with the filter language, and
saved searches."""
