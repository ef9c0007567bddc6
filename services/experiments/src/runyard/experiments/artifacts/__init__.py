"""Artifacts: files attached to experiments, their bytes in a content-addressed store."""
