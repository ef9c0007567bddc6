"""The use cases of experiments, their lifecycle and runs, tags, search and saved searches. They
change rows, write outbox events and flush in the caller's transaction; they never commit."""
