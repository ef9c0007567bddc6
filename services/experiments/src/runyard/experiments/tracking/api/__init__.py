"""HTTP API of tracking: ``/experiments`` (with their lifecycle, runs and tags), ``/tags`` and
``/saved-searches``."""
