"""Which event becomes which notification, for whom, with which defaults, rendered how.

The one place a notification is rendered from an event: at once when the recipient is known, or
later when an email parked for a user not yet known is released (see ``service``). ``NOTICES``
is also the list of event types a user has preferences for (``GET /notifications/preferences``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runyard.notifications.account_notices import (
    email_changed_context,
    password_changed_context,
    password_reset_context,
    registration_attempted_context,
    verification_context,
)
from runyard.notifications.alert_notices import alert_context
from runyard.notifications.formatting import facts as facts
from runyard.notifications.formatting import format_local as format_local
from runyard.notifications.formatting import zone_of as zone_of
from runyard.notifications.links import Links
from runyard.notifications.mailer import RenderedEmail, render_email
from runyard.notifications.model_notices import model_context
from runyard.notifications.models import User
from runyard.notifications.run_notices import experiment_stalled_context
from runyard.shared.contracts.alerts import AlertResolved, AlertTriggered
from runyard.shared.contracts.auth import (
    AccountLocked,
    EmailLinkRequested,
    EmailVerificationRequested,
    EmailVerified,
    LoginFailed,
    PasswordChanged,
    PasswordResetRequested,
    RegistrationAttempted,
)
from runyard.shared.contracts.experiments import (
    DatasetGenerationCompleted,
    DatasetGenerationFailed,
    DatasetImportCompleted,
    DatasetImportFailed,
    ExperimentCompleted,
    ExperimentFailed,
    ExperimentStalled,
    HpoCampaignCompleted,
    NasCampaignCompleted,
)
from runyard.shared.contracts.models import (
    ModelRegistered,
    ModelVersionAliasRemoved,
    ModelVersionAliasSet,
    ModelVersionArchived,
    ModelVersionCreated,
)
from runyard.shared.contracts.webhooks import WebhookEndpointDisabled
from runyard.shared.events import CloudEvent

MAX_TITLE_LENGTH = 500


def format_duration(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def format_metric(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def pairs(values: dict[str, Any] | None) -> list[tuple[str, str]]:
    return [(name, format_metric(value)) for name, value in sorted((values or {}).items())]


def user_context(user: User) -> dict[str, Any]:
    return {
        "id": str(user.user_id),
        "username": user.username,
        "display_name": user.full_name or user.username,
        "timezone": user.timezone,
    }


# --- contexts (event, payload, recipient) -> what the template needs besides ``user`` ---------


def experiment_completed_context(
    event: CloudEvent, payload: ExperimentCompleted, user: User
) -> dict[str, Any]:
    return {
        "experiment": {
            "id": str(payload.experiment_id),
            "name": payload.name,
            "model_type": payload.model_type,
            "total_epochs": payload.total_epochs,
            "best_epoch": payload.best_epoch,
            "duration": format_duration(payload.duration_seconds),
            "ended_at": format_local(payload.ended_at or event.time, user.timezone),
            "metrics": pairs(payload.final_metrics),
        }
    }


def experiment_failed_context(
    event: CloudEvent, payload: ExperimentFailed, user: User
) -> dict[str, Any]:
    return {
        "experiment": {"name": payload.name, "error": payload.error},
        "facts": facts(
            ("Experiment ID", payload.experiment_id),
            ("Model type", payload.model_type),
            ("Epochs run", payload.total_epochs),
            ("Duration", format_duration(payload.duration_seconds)),
            ("Failed", format_local(payload.ended_at or event.time, user.timezone)),
            *[(f"Last {name}", value) for name, value in pairs(payload.final_metrics)],
        ),
    }


def hpo_completed_context(
    event: CloudEvent, payload: HpoCampaignCompleted, user: User
) -> dict[str, Any]:
    best = None if payload.best_value is None else format_metric(payload.best_value)
    return {
        "campaign": {"name": payload.name, "best_params": pairs(payload.best_params)},
        "facts": facts(
            ("Campaign ID", payload.campaign_id),
            ("Method", payload.method),
            ("Trials", f"{payload.trials_completed} of {payload.trials_total}"),
            (f"Best {payload.metric}", best and f"{best} ({payload.direction})"),
            ("Best experiment", payload.best_experiment_id),
            ("Stopped because", payload.reason.replace("_", " ")),
            ("Finished", format_local(event.time, user.timezone)),
        ),
    }


def nas_completed_context(
    event: CloudEvent, payload: NasCampaignCompleted, user: User
) -> dict[str, Any]:
    best = None if payload.best_accuracy is None else format_metric(payload.best_accuracy)
    return {
        "campaign": {"name": payload.name, "best_architecture": pairs(payload.best_architecture)},
        "facts": facts(
            ("Campaign ID", payload.campaign_id),
            ("Search algorithm", payload.search_algorithm),
            ("Trials", f"{payload.trials_completed} of {payload.num_trials}"),
            ("Best accuracy", best),
            ("Best trial", payload.best_trial_id),
            ("Finished", format_local(event.time, user.timezone)),
        ),
    }


def generation_completed_context(
    event: CloudEvent, payload: DatasetGenerationCompleted, user: User
) -> dict[str, Any]:
    return {
        "job": {"name": payload.name},
        "facts": facts(
            ("Dataset ID", payload.dataset_id),
            ("Signals", payload.num_signals),
            ("Fault types", ", ".join(payload.fault_types)),
            ("Duration", format_duration(payload.duration_seconds)),
            ("Finished", format_local(event.time, user.timezone)),
        ),
    }


def import_completed_context(
    event: CloudEvent, payload: DatasetImportCompleted, user: User
) -> dict[str, Any]:
    return {
        "job": {"name": payload.name},
        "facts": facts(
            ("Dataset ID", payload.dataset_id),
            ("Files", payload.num_files),
            ("Signals", payload.num_signals),
            ("Duration", format_duration(payload.duration_seconds)),
            ("Finished", format_local(event.time, user.timezone)),
        ),
    }


def job_failed_context(
    event: CloudEvent, payload: DatasetGenerationFailed | DatasetImportFailed, user: User
) -> dict[str, Any]:
    errors = getattr(payload, "errors", [])[:10]
    return {
        "job": {
            "name": payload.name,
            "error": payload.error,
            "errors": [", ".join(f"{k}: {v}" for k, v in e.items()) for e in errors],
        },
        "facts": facts(
            ("Job ID", payload.job_id),
            ("Duration", format_duration(payload.duration_seconds)),
            ("Failed", format_local(event.time, user.timezone)),
        ),
    }


def login_failed_context(event: CloudEvent, payload: LoginFailed, user: User) -> dict[str, Any]:
    return {
        "attempt": {
            "occurred_at": format_local(event.time, user.timezone),
            "ip_address": payload.ip_address,
            "user_agent": payload.user_agent,
            "reason": payload.reason,
            "consecutive_failures": payload.consecutive_failures,
        }
    }


def account_locked_context(event: CloudEvent, payload: AccountLocked, user: User) -> dict[str, Any]:
    return {
        "lock": {"consecutive_failures": payload.consecutive_failures},
        "facts": facts(
            ("Locked at", format_local(event.time, user.timezone)),
            ("Locked until", format_local(payload.locked_until, user.timezone)),
            ("Last IP address", payload.ip_address),
        ),
    }


def endpoint_disabled_context(
    event: CloudEvent, payload: WebhookEndpointDisabled, user: User
) -> dict[str, Any]:
    return {
        "webhook": {
            "id": str(payload.webhook_id),
            "name": payload.name,
            "url": payload.url,
            "reason": payload.reason,
            "consecutive_failures": payload.consecutive_failures,
            "disabled_at": format_local(event.time, user.timezone),
        }
    }


# --- the catalog -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Defaults:
    """A preference's values when the user has not set one (``docs/events.md`` lists them)."""

    email_enabled: bool = True
    in_app_enabled: bool = True
    slack_enabled: bool = True
    webhook_enabled: bool = True
    email_frequency: str = "immediate"


@dataclass(frozen=True)
class Notice:
    template_name: str
    #: what users see in preferences, digests and summaries
    label: str
    #: (event, its validated payload, recipient) -> the template's context besides ``user``
    context: Callable[[CloudEvent, Any, User], dict[str, Any]]
    #: payload -> one line: the in-app title, the digest line
    title: Callable[[Any], str]
    #: payload -> the user the notification is for (None: nobody)
    recipient: Callable[[Any], uuid.UUID | None] = field(default=lambda p: p.owner_id)
    defaults: Defaults = Defaults()
    #: security alert: always emailed at once, never digested, cannot be switched off, no
    #: unsubscribe link
    critical: bool = False
    #: payload -> where the email goes instead of the user's address (a new address to verify,
    #: the previous one after a change); None: the user's address
    address: Callable[[Any], str | None] = field(default=lambda p: None)
    #: a burst of a critical type may be folded into one summary email; not for emails whose
    #: link or recipient a summary would lose
    throttled: bool = True


def _failed_title(noun: str) -> Callable[[Any], str]:
    return lambda p: f'{noun} "{p.name}" failed: {p.error}'


NOTICES: dict[str, Notice] = {
    ExperimentCompleted.event_type: Notice(
        "experiment_completed",
        "Experiment completed",
        experiment_completed_context,
        lambda p: f'Experiment "{p.name}" completed after {p.total_epochs} epochs',
    ),
    ExperimentFailed.event_type: Notice(
        "experiment_failed",
        "Experiment failed",
        experiment_failed_context,
        lambda p: f'Experiment "{p.name}" failed' + (f": {p.error}" if p.error else ""),
    ),
    ExperimentStalled.event_type: Notice(
        "experiment_stalled",
        "Training run stopped reporting",
        experiment_stalled_context,
        lambda p: f'Experiment "{p.name}" stopped reporting',
    ),
    AlertTriggered.event_type: Notice(
        "alert_triggered",
        "Alert on training metrics",
        alert_context,
        lambda p: p.summary,
    ),
    AlertResolved.event_type: Notice(
        "alert_resolved",
        "Alert cleared",
        alert_context,
        lambda p: f"Resolved: {p.summary}",
        # the in-app inbox says it; an email per cleared alert is opt-in
        defaults=Defaults(email_enabled=False),
    ),
    # the model registry: an alias move (a new champion) is told at once; a new version goes to
    # a daily digest; a new model, a removed alias and an archived version only to the inbox
    ModelVersionAliasSet.event_type: Notice(
        "model_registry", "Model alias moved", model_context, lambda p: p.summary()
    ),
    ModelVersionCreated.event_type: Notice(
        "model_registry",
        "New model version",
        model_context,
        lambda p: p.summary(),
        defaults=Defaults(email_frequency="daily"),
    ),
    ModelRegistered.event_type: Notice(
        "model_registry",
        "Model registered",
        model_context,
        lambda p: p.summary(),
        defaults=Defaults(email_enabled=False),
    ),
    ModelVersionAliasRemoved.event_type: Notice(
        "model_registry",
        "Model alias removed",
        model_context,
        lambda p: p.summary(),
        defaults=Defaults(email_enabled=False),
    ),
    ModelVersionArchived.event_type: Notice(
        "model_registry",
        "Model version archived",
        model_context,
        lambda p: p.summary(),
        defaults=Defaults(email_enabled=False),
    ),
    HpoCampaignCompleted.event_type: Notice(
        "hpo_campaign_completed",
        "HPO campaign completed",
        hpo_completed_context,
        lambda p: f'HPO campaign "{p.name}" completed ({p.trials_completed} trials)',
    ),
    NasCampaignCompleted.event_type: Notice(
        "nas_campaign_completed",
        "NAS campaign completed",
        nas_completed_context,
        lambda p: f'NAS campaign "{p.name}" completed ({p.trials_completed} trials)',
    ),
    DatasetGenerationCompleted.event_type: Notice(
        "dataset_generation_completed",
        "Dataset generation completed",
        generation_completed_context,
        lambda p: f'Dataset generation "{p.name}" completed ({p.num_signals} signals)',
        defaults=Defaults(email_frequency="daily"),
    ),
    DatasetGenerationFailed.event_type: Notice(
        "dataset_generation_failed",
        "Dataset generation failed",
        job_failed_context,
        _failed_title("Dataset generation"),
    ),
    DatasetImportCompleted.event_type: Notice(
        "dataset_import_completed",
        "Dataset import completed",
        import_completed_context,
        lambda p: f'Dataset import "{p.name}" completed ({p.num_signals} signals)',
        defaults=Defaults(email_frequency="daily"),
    ),
    DatasetImportFailed.event_type: Notice(
        "dataset_import_failed",
        "Dataset import failed",
        job_failed_context,
        _failed_title("Dataset import"),
    ),
    WebhookEndpointDisabled.event_type: Notice(
        "webhook_endpoint_disabled",
        "Webhook endpoint disabled",
        endpoint_disabled_context,
        lambda p: f'Webhook "{p.name}" was disabled: {p.reason}',
    ),
    LoginFailed.event_type: Notice(
        "login_failed",
        "Failed sign-in",
        login_failed_context,
        lambda p: f"Failed sign-in from {p.ip_address or 'an unknown address'} ({p.reason})",
        recipient=lambda p: p.user_id,
        critical=True,
    ),
    AccountLocked.event_type: Notice(
        "account_locked",
        "Account locked",
        account_locked_context,
        lambda p: f"Account locked after {p.consecutive_failures} failed sign-in attempts",
        recipient=lambda p: p.user_id,
        critical=True,
    ),
    PasswordResetRequested.event_type: Notice(
        "password_reset_requested",
        "Password reset",
        password_reset_context,
        lambda p: f"Password reset requested from {p.ip_address or 'an unknown address'}",
        recipient=lambda p: p.user_id,
        critical=True,
        address=lambda p: p.email,
        throttled=False,
    ),
    EmailVerificationRequested.event_type: Notice(
        "email_verification_requested",
        "Email verification",
        verification_context,
        lambda p: f"Verification link sent to {p.email}",
        recipient=lambda p: p.user_id,
        critical=True,
        address=lambda p: p.email,
        throttled=False,
    ),
    PasswordChanged.event_type: Notice(
        "password_changed",
        "Password changed",
        password_changed_context,
        lambda p: (
            "Password reset with an emailed link" if p.reason == "reset" else "Password changed"
        ),
        recipient=lambda p: p.user_id,
        critical=True,
    ),
    EmailVerified.event_type: Notice(
        "email_changed",
        "Email address changed",
        email_changed_context,
        lambda p: f"Email address changed to {p.email}",
        # only a change is told, to the address the account had before it
        recipient=lambda p: p.user_id if p.previous_email else None,
        critical=True,
        address=lambda p: p.previous_email,
        throttled=False,
    ),
    RegistrationAttempted.event_type: Notice(
        "registration_attempted",
        "Sign-up with your address",
        registration_attempted_context,
        lambda p: (
            f"Someone tried to sign up with your address from "
            f"{p.ip_address or 'an unknown address'}"
        ),
        recipient=lambda p: p.user_id,
        critical=True,
    ),
}


def template_name(event_type: str) -> str:
    return NOTICES[event_type].template_name


def title_of(event: CloudEvent, payload: Any) -> str:
    title = " ".join(NOTICES[event.type].title(payload).split())
    return title[:MAX_TITLE_LENGTH]


def address_of(event: CloudEvent) -> str | None:
    """Where the email ``event`` means goes when not to its user's address."""
    return NOTICES[event.type].address(event.payload())


def render_notice(
    event: CloudEvent, user: User, *, unsubscribe_url: str | None, links: Links | None = None
) -> RenderedEmail:
    """The email ``event`` means for ``user``; raises on a payload that does not validate. An
    email-link event gets its ``link`` and ``token``, derived here from the event's public
    ``link_id`` (the event never carries them)."""
    notice = NOTICES[event.type]
    payload = event.payload()
    context = notice.context(event, payload, user)
    if isinstance(payload, EmailLinkRequested):
        if links is None:
            raise ValueError(f"{event.type} needs the email link secret to render")
        token = payload.link_token(links.email_link_secret)
        context = {**context, "token": token, "link": links.account_link(event.type, token)}
    return render_email(
        notice.template_name,
        {
            "user": user_context(user),
            "facts": [],
            "notice_label": notice.label,
            "unsubscribe_url": unsubscribe_url,
            **context,
        },
    )
