"""The Python SDK and CLI (clients/python) against the whole stack, and its WAL and sender
against a small in-process HTTP server."""
