"""HTTP API of campaigns: ``/hpo-campaigns`` (with ``/experiments/{id}/should-prune`` for the
trials' training loops) and ``/nas-campaigns``."""
