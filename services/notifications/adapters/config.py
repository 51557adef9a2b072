"""The notifications service's settings (environment prefix `NOTIFICATIONS_`).

Delivery settings are per process (the SMTP relay, retry pacing, the unsubscribe endpoint);
what a program decides (channels, webhook URL and its secret's variable name, sender address,
templates, rate limit) stays in the program document.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from referrals.platform.errors import ConfigError
from referrals.platform.settings import ServiceSettings
from referrals.programs.model import DEFAULT_SECRET_ENV, LEGACY_SECRET_ENV
from services.notifications.adapters.webhook_policy import AllowList

# The development default of old, published in this repository: signing links with a secret
# everybody can read lets anyone unsubscribe anyone. The service refuses to start with it.
DEV_UNSUBSCRIBE_SECRET = "dev-only-unsubscribe-secret"
MIN_SECRET_CHARS = 16


class NotificationsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFICATIONS_")

    group_id: str = "referrals-notifications"
    metrics_port: int = 9203
    # Deliveries are recorded (notifications.sent.v1) at the next punctuation: a short interval
    # keeps the window in which a crash causes a resend small.
    punctuate_ms: int = 200
    # -- email over SMTP --
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025  # Mailpit's and aiosmtpd's default; 587 with STARTTLS in production
    smtp_starttls: bool = False
    smtp_tls: bool = False  # implicit TLS from the first byte (port 465)
    smtp_validate_certs: bool = True
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_timeout_s: float = 10.0
    # Sessions open to the relay at once. A message is four round trips (MAIL, RCPT, DATA, the
    # body), each waiting for a turn of the event loop, which is busy with the stream: under
    # load a turn takes tens of ms, so the relay's share of the sender is connections / (4 x
    # turn). 10 sessions capped it near 120 messages/s while the stream ran (measured), and the
    # thank-yous queued for seconds. Relays take more (Postfix: 50 per client by default).
    smtp_max_connections: int = 32
    # The right-hand side of every Message-ID: <notification_id@domain>.
    message_id_domain: str = "referrals.local"
    # -- retries: exponential backoff with jitter, base * 2^(tries-1), capped (domain.retry) --
    retry_base_s: float = 0.5
    retry_max_s: float = 60.0  # the longest wait between two tries (the contract: 60 s)
    # A delivery failing for now (relay or receiver down) is retried until this long after the
    # message was first due, then dead-lettered (DEADLINE_EXCEEDED). Waiting messages are kept
    # in the task's store, not in memory.
    delivery_deadline_s: float = 86400.0
    # Deliveries handed to the sender and not yet recorded, over all tasks: what memory holds.
    # Further due messages stay in the store (a retry timer due now) until there is room.
    # A delivery counts until the punctuation after its outcome records it (each second), so
    # this also caps messages per second: 1,000 was just above the 750 a second that 1,000
    # input events/s make (a WON's three messages a referral), and a burst past it waited a
    # punctuation. A delivery held costs a few KB.
    max_in_flight: int = 4000
    # Room beyond max_in_flight for a WON's thank-you (`slots.urgent`): under a backlog it
    # is handed to the sender at once, where it takes the next free slot, instead of waiting in
    # the store behind every message due before it (at 1,000 input events/s that wait was
    # seconds). Bounded too, so a burst of WONs cannot fill memory.
    urgent_in_flight: int = 1000
    # -- concurrency: a slow endpoint holds at most its own slots, never everyone's --
    max_concurrent_deliveries: int = 100
    webhook_max_connections: int = 8  # per webhook host
    # Webhooks go to https URLs on public addresses; these comma-separated host[:port] may
    # also resolve to private addresses and use http (`adapters.webhook_policy`).
    webhook_allow_hosts: str = ""
    # How long a clean stop waits for deliveries already talking to a server.
    shutdown_grace_s: float = 5.0
    # -- links --
    unsubscribe_host: str = "127.0.0.1"
    unsubscribe_port: int = 9213
    unsubscribe_base_url: str = "http://127.0.0.1:9213/unsubscribe"  # unless the program has one
    # Required (`check_startup`): the demo and every launcher of this repository generate one.
    unsubscribe_secret: str = ""
    # How long a link works after its email was sent; the law (CAN-SPAM) wants at least 30.
    unsubscribe_token_max_age_days: int = Field(default=90, ge=30, le=3650)
    refer_base_url: str = "https://referrals.example.com/r"  # refer_url = <base>/<advocate_id>


def check_startup(settings: NotificationsSettings, env: Mapping[str, str]) -> None:
    """What the service refuses to start with (a ConfigError naming the variable): no
    unsubscribe secret, the public development one or a short one; SMTP credentials without
    TLS (they would cross the network in clear); an allow-list entry that is not host[:port];
    a webhook secret still in the variable that was renamed."""
    secret = settings.unsubscribe_secret
    generate = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
    if not secret:
        raise ConfigError(
            f"NOTIFICATIONS_UNSUBSCRIBE_SECRET is not set: unsubscribe links are signed with it; "
            f"{generate}"
        )
    if secret == DEV_UNSUBSCRIBE_SECRET:
        raise ConfigError(
            "NOTIFICATIONS_UNSUBSCRIBE_SECRET is the public development default, with which "
            f"anyone could unsubscribe anyone; {generate}"
        )
    if len(secret) < MIN_SECRET_CHARS:
        raise ConfigError(
            f"NOTIFICATIONS_UNSUBSCRIBE_SECRET is shorter than {MIN_SECRET_CHARS} characters; "
            f"{generate}"
        )
    credentials = settings.smtp_username or settings.smtp_password
    if credentials and not (settings.smtp_starttls or settings.smtp_tls):
        raise ConfigError(
            "NOTIFICATIONS_SMTP_USERNAME/_PASSWORD are set but neither NOTIFICATIONS_SMTP_STARTTLS "
            "nor NOTIFICATIONS_SMTP_TLS: the credentials would be sent in clear"
        )
    AllowList.parse(settings.webhook_allow_hosts)  # a bad entry is named here, not at first use
    if env.get(LEGACY_SECRET_ENV) and not env.get(DEFAULT_SECRET_ENV):
        raise ConfigError(
            f"{LEGACY_SECRET_ENV} is set but {DEFAULT_SECRET_ENV} is not: webhook secrets are "
            f"read only from variables starting with WEBHOOK_SECRET_; rename it"
        )
