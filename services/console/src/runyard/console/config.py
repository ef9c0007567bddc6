"""The console's settings (``CONSOLE_`` prefix). It owns no tables: of the settings every service
has, it uses the environment, Kafka, logging and instance ones; the database and outbox ones are
ignored."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from runyard.shared.settings import ServiceSettings, dev_secret


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CONSOLE_", extra="ignore", frozen=True)
    service_name = "console"

    #: the public API the console is a client of: the gateway
    api_url: str = "http://127.0.0.1:8000"
    api_timeout_s: float = 30.0
    #: seals the session cookie (AES-GCM) and signs the sign-in forms' CSRF tokens; the same
    #: value on every console replica
    session_secret: SecretStr = dev_secret("console-session")
    #: how long a browser keeps the session cookie; the session ends earlier when its refresh
    #: token expires or is revoked
    session_max_age_s: int = 7 * 24 * 3600
    #: ``Secure`` cookies; unset: secure outside ``dev`` and ``test``
    cookie_secure: bool | None = None
    #: push live updates (Server-Sent Events fed from Kafka)
    live_enabled: bool = True
    #: a comment line on every open event stream this often, so proxies keep it open
    sse_heartbeat_s: float = 15.0
    #: an event stream is closed after this long; the browser reconnects at once, and the
    #: session is checked (and its token refreshed) again
    sse_max_connection_s: float = 300.0
    #: events waiting for one slow browser; beyond it the page is told to reload its data
    sse_queue_size: int = 1000
    #: while pages are open, after this long without any record the live consumer pauses every
    #: partition (the broker's work per fetch grows with the partitions it names)
    live_idle_pause_after_s: float = Field(default=2.0, gt=0)
    #: while paused, how often the partitions are checked for new records (one ListOffsets
    #: request; all resume when one has some): the extra latency of the first event after a rest
    live_idle_check_s: float = Field(default=0.25, gt=0)

    @property
    def secure_cookies(self) -> bool:
        if self.cookie_secure is not None:
            return self.cookie_secure
        return self.environment not in ("dev", "test")
