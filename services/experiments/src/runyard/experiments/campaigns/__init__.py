"""HPO and NAS campaigns on one core (``service.core``): owned campaigns read, listed and locked
the same way, trials counted against a budget, the best trial kept, completion announced."""
