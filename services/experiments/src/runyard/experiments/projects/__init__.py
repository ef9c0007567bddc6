"""Projects: named, soft-deletable groups of an owner\x27s experiments."""
