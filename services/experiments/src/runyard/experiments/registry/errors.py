"""Refusals of the model registry (problem+json through the shared handlers)."""

from __future__ import annotations

from runyard.experiments.errors import Conflict, NameTaken, ValidationFailed


class ModelNameTaken(NameTaken):
    def __init__(self, name: str) -> None:
        super().__init__("a registered model", name)


class AliasHeld(Conflict):
    """A version that holds aliases cannot be deleted or archived: move the aliases first."""

    def __init__(self, action: str, version: int, aliases: list[str]) -> None:
        super().__init__(
            f"Version {version} holds the alias(es) {', '.join(aliases)}: move or delete them "
            f"before you {action} it.",
            aliases=aliases,
        )


class VersionArchived(Conflict):
    def __init__(self, version: int) -> None:
        super().__init__(f"Version {version} is archived: it cannot take an alias.")


class InvalidJsonSchema(ValidationFailed):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(
            f"{field} is not a valid JSON Schema: {reason}", loc=["body", field], msg=reason
        )


class UnknownExperiment(ValidationFailed):
    def __init__(self) -> None:
        super().__init__(
            "No such experiment.", loc=["body", "experiment_id"], msg="no such experiment"
        )


class UnknownVersion(ValidationFailed):
    def __init__(self, version: int) -> None:
        super().__init__(
            f"The model has no version {version}.", loc=["body", "version"], msg="no such version"
        )


class InvalidArtifactPath(ValidationFailed):
    def __init__(self, reason: str) -> None:
        super().__init__(
            f"Invalid artifact path: {reason}.", loc=["body", "artifact_path"], msg=reason
        )
