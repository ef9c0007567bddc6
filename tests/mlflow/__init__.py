"""The stock MLflow client (its own virtualenv, never the workspace's) against the whole stack:
MLflow's REST API through the gateway, with Runyard's own API, emails and webhooks showing the
result."""
