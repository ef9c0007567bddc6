"""The ``runyard`` command."""
