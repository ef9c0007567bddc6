"""Campaign use cases: the core both kinds share, HPO's ask/tell and pruning, NAS's trials."""
