from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from runyard.shared.settings import ServiceSettings, dev_secret


class Settings(ServiceSettings):
    #: The SMTP relay's operator issues its password: it need not be 32 bytes long.
    external_credentials = ServiceSettings.external_credentials | {"smtp_password"}
    model_config = SettingsConfigDict(env_prefix="NOTIFICATIONS_", extra="ignore", frozen=True)
    service_name = "notifications"

    #: ``smtp://host:port`` (STARTTLS when the server offers it) or ``smtps://host:port`` (TLS).
    #: Credentials: ``smtp_username``/``smtp_password``, else the URL's ``user:password@`` part.
    smtp_url: str = "smtp://127.0.0.1:2525"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout_s: float = 30.0
    #: SMTP connections the sender uses at once: a batch is spread over them, and they are kept
    #: open between batches (the relay's concurrency limit per client is usually 10-20).
    smtp_connections: int = Field(default=4, ge=1, le=64)
    #: A kept-open SMTP connection unused for this long is closed (QUIT); servers drop idle
    #: clients after a few minutes (RFC 5321 suggests 5).
    smtp_idle_timeout_s: float = Field(default=30.0, ge=0)
    mail_from: str = "Runyard <noreply@runyard.local>"

    email_batch_size: int = 20
    #: longest pause when less than a full batch was due: the consumer batch that queues an
    #: email wakes the sender at once (``runtime.work``); this finds retries coming due
    email_poll_interval_s: float = 5.0
    email_max_attempts: int = 8
    email_backoff_base_s: float = 5.0
    email_backoff_cap_s: float = 3600.0
    #: A row left in ``sending`` longer than this (the sender crashed mid-send) is queued again.
    email_sending_timeout_s: float = 300.0
    #: An email for a user not yet known is parked until the user arrives; after this long it
    #: is skipped (``user_never_known``) instead.
    email_awaiting_user_max_age_s: float = 7 * 24 * 3600.0

    #: The gateway's public base URL: links in emails (unsubscribe) point at it.
    public_url: str = "http://127.0.0.1:8000"
    #: HMAC key of the unsubscribe tokens in emails.
    unsubscribe_secret: SecretStr = dev_secret("unsubscribe-signing")
    #: Derives the tokens of password reset and verification links from the events' public
    #: ``link_id``: the same value as ``AUTH_EMAIL_LINK_SECRET``, and no other service's.
    email_link_secret: SecretStr = dev_secret("email-link-token")
    unsubscribe_token_ttl_s: float = 90 * 24 * 3600.0

    #: Local hour (in the user's timezone) daily and weekly digests go out at.
    digest_hour: int = Field(default=8, ge=0, le=23)
    #: Day weekly digests go out on (0 = Monday).
    digest_weekday: int = Field(default=0, ge=0, le=6)
    #: Length of an "hourly" digest period in seconds; a divisor of 3600. Less than an hour is
    #: for demos and end-to-end tests (the next period boundary after the event).
    digest_hourly_period_s: int = Field(default=3600, ge=1, le=3600)

    @field_validator("digest_hourly_period_s")
    @classmethod
    def _divides_an_hour(cls, value: int) -> int:
        if 3600 % value:
            raise ValueError("must divide 3600 (an hour) evenly")
        return value

    #: Users whose due digest rows one scheduler pass claims.
    digest_batch_users: int = Field(default=200, ge=1)
    digest_poll_interval_s: float = 5.0
    #: Events listed per type in one digest; the rest are counted.
    digest_max_items_per_type: int = 20

    #: A burst of the same alert (``login.failed``, ``account.locked``) for one user: the first
    #: one is emailed at once, the others in this window are counted and summarised in one
    #: email when the window ends.
    alert_throttle_window_s: float = Field(default=900.0, ge=0)
