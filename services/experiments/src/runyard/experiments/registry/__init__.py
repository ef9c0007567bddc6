"""The model registry: registered models, their numbered versions (each made from an
experiment's artifact), aliases and tags. ADR 0017."""
