"""Refusals of the prediction log (problem+json through the shared handlers)."""

from __future__ import annotations

from runyard.experiments.errors import Conflict, ValidationFailed


class InvalidPrediction(ValidationFailed):
    """The first thing wrong with a body: ``loc`` names the prediction's index in the batch and
    the field (and, for an input, its JSON path)."""

    def __init__(self, detail: str, *, loc: list[str | int], msg: str, type_: str) -> None:
        super().__init__(detail, loc=loc, msg=msg, type_=type_)


class VersionArchived(Conflict):
    def __init__(self, version: int) -> None:
        super().__init__(f"Version {version} is archived: it takes no more predictions.")
