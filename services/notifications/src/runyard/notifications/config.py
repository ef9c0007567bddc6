from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from runyard.shared.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFICATIONS_", extra="ignore", frozen=True)
    service_name = "notifications"

    #: ``smtp://host:port`` (STARTTLS when the server offers it) or ``smtps://host:port`` (TLS).
    #: Credentials: ``smtp_username``/``smtp_password``, else the URL's ``user:password@`` part.
    smtp_url: str = "smtp://127.0.0.1:2525"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout_s: float = 30.0
    mail_from: str = "Runyard <noreply@runyard.local>"

    email_batch_size: int = 20
    email_poll_interval_s: float = 0.5
    email_max_attempts: int = 8
    email_backoff_base_s: float = 5.0
    email_backoff_cap_s: float = 3600.0
    #: A row left in ``sending`` longer than this (the sender crashed mid-send) is queued again.
    email_sending_timeout_s: float = 300.0
    #: An email for a user not yet known is parked until the user arrives; after this long it
    #: is skipped (``user_never_known``) instead.
    email_awaiting_user_max_age_s: float = 7 * 24 * 3600.0
