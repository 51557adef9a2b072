"""The notifications adapter's edges, without a broker or a server: signed unsubscribe tokens,
webhook signatures and status handling, the email advocates receive, the retry schedule, and the
small durable structures (outbox entries, the journal; timers and waiting records are the
runtime's: tests/unit/streams)."""

from __future__ import annotations

import contextlib
import email as email_package
import email.policy
import hashlib
import hmac
import json
import socket
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from types import MappingProxyType
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller
from notifications_builders import NOW, program

from referrals.programs.model import MessageKind, NotificationChannel, Webhook
from referrals.streams.state import Keyspace, MemoryBackend, TaskStore
from services.notifications.adapters import smtp, unsubscribe, webhook
from services.notifications.adapters.codec import OUTBOX_ENTRIES
from services.notifications.adapters.config import NotificationsSettings
from services.notifications.adapters.failures import PermanentFailure, TransientFailure
from services.notifications.adapters.rendering import render
from services.notifications.adapters.storage import (
    Journal,
    Journaled,
    OutboxEntry,
)
from services.notifications.domain.messages import Message, RenderedMessage

SECRET = "s3cret"
EMAIL, WEBHOOK = NotificationChannel.EMAIL, NotificationChannel.WEBHOOK


def _message(**changes: object) -> Message:
    context = {
        "advocate_name": "Alex Doe",
        "program_id": "acme-b2b",
        "referral_id": "r1",
        "prospect_label": "Your friend",
        "kind": "LEAD",
        "status": "LEAD",
        "reward_amount": "",
        "reward_type": "",
        "payout_id": "",
        "referrals_to_next_tier": None,
        "next_tier_amount": None,
        "reason": "",
    }
    message = Message(
        notification_id="nt-0123",
        advocate_id="adv-1",
        referral_id="r1",
        kind=MessageKind.LEAD,
        step=0,
        channels=(EMAIL,),
        locale="en-US",
        email="alex@example.com",
        display_name="Alex Doe",
        trigger_time=NOW,
        context=MappingProxyType(context),
    )
    return replace(message, **changes)  # type: ignore[arg-type]


def _store() -> TaskStore:
    return TaskStore("index", 0, MemoryBackend())


# == unsubscribe tokens =========================================================================
def test_a_signed_token_verifies_to_the_advocate_program_and_issue_time() -> None:
    token = unsubscribe.sign(SECRET, "adv-1", "acme-b2b", NOW)
    assert unsubscribe.verify(SECRET, token, NOW) == unsubscribe.Token("adv-1", "acme-b2b", NOW)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t.replace(t.split(".")[0], unsubscribe.sign(SECRET, "adv-2", "p", NOW)[:-44]),
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),
        lambda t: t.split(".")[0],
        lambda t: "",
        lambda t: "not.a-token",
    ],
    ids=["another-advocate", "edited-mac", "no-mac", "empty", "garbage"],
)
def test_an_edited_or_made_up_token_is_refused(tamper: object) -> None:
    token = unsubscribe.sign(SECRET, "adv-1", "acme-b2b", NOW)
    with pytest.raises(unsubscribe.BadToken):
        unsubscribe.verify(SECRET, tamper(token), NOW)  # type: ignore[operator]


def test_a_token_signed_with_another_secret_is_refused() -> None:
    token = unsubscribe.sign("another secret", "adv-1", "acme-b2b", NOW)
    with pytest.raises(unsubscribe.BadToken, match="signature"):
        unsubscribe.verify(SECRET, token, NOW)


def test_tokens_never_expire_unless_a_maximum_age_is_set() -> None:
    token = unsubscribe.sign(SECRET, "adv-1", "acme-b2b", NOW)
    later = NOW + timedelta(days=400)
    assert unsubscribe.verify(SECRET, token, later).advocate_id == "adv-1"
    assert unsubscribe.verify(SECRET, token, NOW + timedelta(days=29), 30).advocate_id == "adv-1"
    with pytest.raises(unsubscribe.BadToken, match="expired"):
        unsubscribe.verify(SECRET, token, NOW + timedelta(days=31), 30)


def test_unsubscribe_links_carry_the_token_url_safely_and_requests_have_stable_ids() -> None:
    token = unsubscribe.sign(SECRET, "adv 1/ü", "acme-b2b", NOW)
    assert "=" not in token and "/" not in token and "+" not in token
    assert unsubscribe.link("https://x.example/u", token) == f"https://x.example/u?token={token}"
    assert unsubscribe.link("https://x.example/u?lang=de", "t") == (
        "https://x.example/u?lang=de&token=t"
    )
    parsed = unsubscribe.verify(SECRET, token, NOW)
    assert parsed.advocate_id == "adv 1/ü"
    first = unsubscribe.request_for(parsed, "LINK", NOW)
    again = unsubscribe.request_for(parsed, "ONE_CLICK", NOW + timedelta(hours=1))
    assert first.request_id == again.request_id  # the same link used twice: the same request
    other = unsubscribe.verify(SECRET, unsubscribe.sign(SECRET, "adv 1/ü", "p", NOW), NOW)
    assert unsubscribe.request_for(other, "LINK", NOW).request_id != first.request_id


# == webhooks ===================================================================================
def test_the_webhook_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    body = b'{"a":1}'
    expected = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert webhook.signature("k", 1700000000, body) == "sha256=" + expected
    at = 1700000000.0
    assert webhook.verify("k", "1700000000", body, "sha256=" + expected, now=at)
    assert not webhook.verify("k", "1700000001", body, "sha256=" + expected, now=at)
    assert not webhook.verify("k", "1700000000", b'{"a":2}', "sha256=" + expected, now=at)
    assert not webhook.verify("k", "soon", body, "sha256=" + expected, now=at)
    assert not webhook.verify("k", "1700000000", body, "sha256=" + "é" * 64, now=at)


def test_a_receiver_refuses_a_signed_request_replayed_past_the_tolerance() -> None:
    body = b'{"a":1}'
    signed = webhook.signature("k", 1700000000, body)
    assert webhook.TOLERANCE_S == 300
    for delay in (-300, 0, 299, 300):
        assert webhook.verify("k", "1700000000", body, signed, now=1700000000 + delay)
    for delay in (-301, 301, 86400):
        assert not webhook.verify("k", "1700000000", body, signed, now=1700000000 + delay)


def test_webhook_headers_sign_the_body_and_carry_the_idempotency_key() -> None:
    message = _message()
    rendered = RenderedMessage("Subject", "Text", None)
    payload = webhook.body(message, rendered, "https://u.example/?token=t")
    headers = webhook.headers(message, payload, SECRET, NOW)
    assert headers["Idempotency-Key"] == "nt-0123"
    assert headers["X-Referrals-Timestamp"] == str(int(NOW.timestamp()))
    assert webhook.verify(
        SECRET,
        headers["X-Referrals-Timestamp"],
        payload,
        headers[webhook.SIGNATURE],
        now=NOW.timestamp(),
    )
    document = json.loads(payload)
    assert document["notification_id"] == "nt-0123"
    assert (document["kind"], document["step"], document["program_id"]) == ("LEAD", 0, "acme-b2b")
    assert document["advocate"]["email"] == "alex@example.com"
    assert document["trigger_time"] == "2026-03-10T12:00:00Z"
    assert (document["subject"], document["unsubscribe_url"]) == (
        "Subject",
        "https://u.example/?token=t",
    )


def test_a_webhook_without_its_secret_is_a_permanent_failure() -> None:
    hook = Webhook("https://crm.example/hook", secret_env="WEBHOOK_SECRET_ACME")
    assert webhook.secret_for(hook, {"WEBHOOK_SECRET_ACME": "x"}) == "x"
    with pytest.raises(PermanentFailure) as err:
        webhook.secret_for(hook, {})
    assert err.value.reason == "WEBHOOK_SECRET_MISSING"


def test_a_secret_is_read_only_from_a_variable_starting_with_webhook_secret() -> None:
    # Validation refuses such a document; the sender refuses it too, whatever got through.
    hook = Webhook("https://crm.example/hook", secret_env="KAFKA_SASL_PASSWORD")
    with pytest.raises(PermanentFailure) as err:
        webhook.secret_for(hook, {"KAFKA_SASL_PASSWORD": "broker-password"})
    assert err.value.reason == "WEBHOOK_SECRET_REFUSED"
    assert "broker-password" not in str(err.value)


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_2xx_is_acceptance(status: int) -> None:
    webhook._check(status, None)


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (500, "HTTP_5XX"),
        (502, "HTTP_5XX"),
        (503, "HTTP_5XX"),
        (429, "HTTP_429"),
        (408, "HTTP_TRY_LATER"),
    ],
)
def test_server_errors_throttling_and_timeouts_are_retried(status: int, reason: str) -> None:
    with pytest.raises(TransientFailure) as err:
        webhook._check(status, "7")
    assert err.value.reason == reason
    assert err.value.retry_after_s == 7.0


@pytest.mark.parametrize(
    ("status", "reason"), [(400, "HTTP_4XX"), (404, "HTTP_4XX"), (301, "HTTP_3XX")]
)
def test_client_errors_and_redirects_are_permanent(status: int, reason: str) -> None:
    with pytest.raises(PermanentFailure) as err:
        webhook._check(status, None)
    assert err.value.reason == reason


def test_retry_after_is_bounded_and_only_seconds_are_understood() -> None:
    assert webhook._retry_after_s("100000") == 300.0
    assert webhook._retry_after_s("Wed, 21 Oct 2026 07:28:00 GMT") is None


# == email ======================================================================================
def _email(
    message: Message,
    html: str | None = "<p>Hi</p>",
    subject: str = "Thank you",
    text: str = "Hi Alex",
) -> EmailMessage:
    """The message as a mail client reads what went over the wire."""
    return _parsed(_wire(message, html, subject, text))


def _wire(
    message: Message,
    html: str | None = "<p>Hi</p>",
    subject: str = "Thank you",
    text: str = "Hi Alex",
) -> bytes:
    return smtp.build_email(
        message,
        RenderedMessage(subject, text, html),
        from_address="referrals@acme.example",
        domain="referrals.local",
        unsubscribe_url="http://127.0.0.1:9213/unsubscribe?token=abc",
        now=NOW,
    )


def _parsed(wire: bytes) -> EmailMessage:
    parsed = email_package.message_from_bytes(wire, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage) and not parsed.defects
    return parsed


@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("Hi Alex\nthanks\r\nfor 5 points\rbye", "<p>Hi</p>\n<p>x</p>"),  # every line ending
        ("Grüße, Zoë\n" + "é" * 120 + "\nbye.", None),  # quoted-printable, long lines
    ],
)
def test_an_email_as_build_email_writes_it_is_sent_without_a_rewrite(
    monkeypatch: pytest.MonkeyPatch, text: str, html: str | None
) -> None:
    """CRLF lines whatever the template's line endings, and, where no line starts with a
    dot, nothing to stuff: the pipelined send frames it as it is, no regular expression run."""
    wire = _wire(_message(), html=html, text=text)

    def refuse(*_: object) -> bytes:
        raise AssertionError("rewritten")

    monkeypatch.setattr(smtp, "normalize_message_line_endings", refuse)
    monkeypatch.setattr(smtp, "PERIOD_REGEX", None)
    assert smtp._data(wire) == wire + b".\r\n"


def test_a_line_of_an_email_that_starts_with_a_dot_is_stuffed_and_nothing_else_rewritten(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*_: object) -> bytes:
        raise AssertionError("line endings rewritten")

    monkeypatch.setattr(smtp, "normalize_message_line_endings", refuse)
    wire = _wire(_message(), html=None, text="Hi Alex\n.5 points\nbye")
    assert b"\r\n.5 points\r\n" in wire
    assert smtp._data(wire) == wire.replace(b"\r\n.5", b"\r\n..5") + b".\r\n"


def test_an_email_has_the_notification_id_as_message_id_and_one_click_unsubscribe() -> None:
    email = _email(_message())
    assert email["Message-ID"] == "<nt-0123@referrals.local>"
    assert email["From"] == "referrals@acme.example"
    assert email["To"] == "Alex Doe <alex@example.com>"
    assert email["Subject"] == "Thank you"
    assert email["List-Unsubscribe"] == "<http://127.0.0.1:9213/unsubscribe?token=abc>"
    assert email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert email["Auto-Submitted"] == "auto-generated"
    assert email["Date"] == "Tue, 10 Mar 2026 12:00:00 +0000"


def test_an_email_has_a_text_part_and_an_html_alternative_when_the_template_has_one() -> None:
    email = _email(_message())
    assert email.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in email.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    plain = _email(_message(), html=None)
    assert plain.get_content_type() == "text/plain"
    assert plain.get_content().strip() == "Hi Alex"


def test_a_rendered_program_template_becomes_the_email() -> None:
    doc = program()
    message = _message()
    rendered = render(message, doc, unsubscribe_url="https://u/?token=t", refer_url="https://r/a")
    wire = smtp.build_email(
        message,
        rendered,
        from_address="a@b.c",
        domain="d",
        unsubscribe_url="https://u/?token=t",
        now=NOW,
    )
    email = _parsed(wire)
    body = email.get_body(preferencelist=("plain",))
    assert body is not None and "https://u/?token=t" in body.get_content()  # type: ignore[attr-defined]
    assert "Your friend" in email["Subject"]


def test_a_display_name_with_a_line_break_cannot_split_a_header() -> None:
    email = _email(_message(display_name="Alex\r\nBcc: everyone@example.com"))
    assert email["To"] == '"Alex Bcc: everyone@example.com" <alex@example.com>'
    assert "Bcc" not in email


@pytest.mark.parametrize("address", ["alex@example.com\nBcc: x@y.z", "a@b@c"])
def test_an_address_that_cannot_be_a_header_is_a_permanent_failure(address: str) -> None:
    with pytest.raises(PermanentFailure) as err:
        _email(_message(email=address))
    assert err.value.reason == "BAD_ADDRESS"


@pytest.mark.parametrize(
    ("code", "failure", "reason"),
    [
        (421, TransientFailure, "SMTP_4XX"),
        (451, TransientFailure, "SMTP_4XX"),
        (550, PermanentFailure, "SMTP_REJECTED"),
        (554, PermanentFailure, "SMTP_REJECTED"),
    ],
)
def test_smtp_4xx_is_retried_and_5xx_is_permanent(code: int, failure: type, reason: str) -> None:
    result = smtp._by_code(code, "text", "recipient")
    assert isinstance(result, failure) and result.reason == reason


@pytest.mark.parametrize(("code", "reason"), [(550, "RECIPIENT_REFUSED"), (451, "SMTP_4XX")])
async def test_a_recipient_refused_for_good_has_its_own_reason(code: int, reason: str) -> None:
    transport = smtp.SmtpTransport(NotificationsSettings())
    refused = aiosmtplib.SMTPRecipientRefused(code, "mailbox unavailable", "a@b.example")

    async def send(*_: object) -> None:
        raise aiosmtplib.SMTPRecipientsRefused([refused])

    transport._send = send  # type: ignore[method-assign]
    with pytest.raises((PermanentFailure, TransientFailure)) as raised:
        await transport.send(b"", "from@x.example", "a@b.example")
    assert raised.value.reason == reason
    assert isinstance(raised.value, PermanentFailure) == (code >= 500)


# == durable structures =========================================================================
def test_outbox_entries_round_trip() -> None:
    entry = OutboxEntry("adv-1", "acme", (EMAIL, WEBHOOK))
    assert OUTBOX_ENTRIES.decode(OUTBOX_ENTRIES.encode(entry)) == entry
    assert entry.without(EMAIL).channels == (WEBHOOK,)


def test_keyspaces_share_a_store_without_seeing_each_other() -> None:
    store = _store()
    outbox, timers = Keyspace(store, b"o"), Keyspace(store, b"w")
    outbox.put(b"k", b"1")
    timers.put(b"k", b"2")
    assert (outbox.get(b"k"), timers.get(b"k")) == (b"1", b"2")
    assert list(outbox.items()) == [(b"k", b"1")]
    outbox.delete(b"k")
    assert outbox.get(b"k") is None and timers.get(b"k") == b"2"


def test_the_journal_is_read_once_and_a_torn_one_is_ignored(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal")
    entries = [
        Journaled("nt-1", EMAIL, 1, 1234),
        Journaled("nt-2", WEBHOOK, 3, None, "HTTP_4XX", "400"),
    ]
    journal.write(2, entries)
    assert journal.take(2) == entries
    assert journal.take(2) == []
    (tmp_path / "journal" / "task-5.json").write_text("[[1, 2")
    assert journal.take(5) == []
    journal.write(3, [])
    assert not (tmp_path / "journal" / "task-3.json").exists()


@contextlib.contextmanager
def _relay(handler: object) -> Iterator[smtp.SmtpTransport]:
    """A local aiosmtpd relay with `handler`'s hooks, and a transport to it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield smtp.SmtpTransport(NotificationsSettings(smtp_port=port))
    finally:
        controller.stop()


async def test_smtp_sessions_are_reused_across_messages() -> None:
    class Catch:
        sessions: set[int] = set()
        count = 0

        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            Catch.sessions.add(id(session))
            Catch.count += 1
            return "250 OK"

    with _relay(Catch()) as transport:
        for i in range(5):
            wire = f"Subject: m{i}\r\n\r\nhi\r\n".encode()
            await transport.send(wire, "from@example.com", "to@example.com")
        await transport.close()
    assert Catch.count == 5
    assert len(Catch.sessions) == 1  # one SMTP session carried all five messages


async def test_the_ehlo_name_is_looked_up_once_not_for_every_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Catch:
        names: list[str] = []

        async def handle_EHLO(  # aiosmtpd's hook
            self, server: object, session: Any, envelope: object, hostname: str, responses: Any
        ) -> Any:
            Catch.names.append(hostname)
            session.host_name = hostname
            return responses

        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            return "250 OK"

    lookups: list[str] = []
    monkeypatch.setattr(smtp, "ehlo_name", lambda: lookups.append("x") or "me.example")
    with _relay(Catch()) as transport:
        for _ in range(2):  # two sessions: the first is ended (QUIT) before the second
            await transport.send(b"Subject: s\r\n\r\nhi\r\n", "f@example.com", "t@example.com")
            await transport.close()
    assert Catch.names == ["me.example", "me.example"]
    assert lookups == ["x"]


async def test_the_envelope_names_the_programs_address_and_a_refused_recipient_is_permanent() -> (
    None
):
    class Catch:
        envelopes: list[tuple[str, list[str], list[str], bytes]] = []

        async def handle_RCPT(
            self, server: object, session: object, envelope: Any, address: str, options: Any
        ) -> str:
            if address.startswith("gone"):
                return "550 5.1.1 mailbox unavailable"
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
            entry = (envelope.mail_from, envelope.rcpt_tos, envelope.mail_options, envelope.content)
            Catch.envelopes.append(entry)
            return "250 OK"

    wire = _wire(_message(), html=None)
    with _relay(Catch()) as transport:
        await transport.send(wire, "Acme Referrals <referrals@acme.example>", "alex@example.com")
        with pytest.raises(PermanentFailure) as refused:
            await transport.send(wire, "referrals@acme.example", "gone@example.com")
        await transport.send(wire, "referrals@acme.example", '"alex doe"@example.com')
        await transport.close()
    assert refused.value.reason == "RECIPIENT_REFUSED"
    [first, second] = Catch.envelopes
    assert first[:2] == ("referrals@acme.example", ["alex@example.com"])
    assert first[2] == [f"SIZE={len(wire)}"]  # the relay announces SIZE: the exact size
    assert first[3].replace(b"\r\n", b"\n") == wire.replace(b"\r\n", b"\n")
    assert second[1] == ['"alex doe"@example.com']


def test_a_programs_from_address_is_parsed_once_in_a_bounded_cache() -> None:
    smtp._from_header.cache_clear()
    for _ in range(3):
        _wire(_message())
    info = smtp._from_header.cache_info()
    assert (info.misses, info.hits) == (1, 2)
    assert info.maxsize is not None and info.maxsize <= 1024  # one per program, bounded
    assert smtp._envelope_address.cache_info().maxsize == info.maxsize


def test_a_long_unsubscribe_url_goes_out_verbatim_not_as_an_encoded_word() -> None:
    url = "http://127.0.0.1:9213/unsubscribe?token=" + "t" * 200  # as long as real tokens
    wire = smtp.build_email(
        _message(),
        RenderedMessage("Thank you", "Hi Alex", None),
        from_address="referrals@acme.example",
        domain="referrals.local",
        unsubscribe_url=url,
        now=NOW,
    ).decode()
    assert f"List-Unsubscribe: <{url}>" in wire  # a mail client can read the link
    assert "=?utf-8?" not in wire


def test_an_email_goes_out_with_crlf_lines_and_only_ascii_bytes() -> None:
    wire = _wire(_message(display_name="Zoë Ångström"), html="<p>Grüße</p>", text="Grüße\nZoë")
    assert wire.isascii()  # no server needs 8BITMIME or SMTPUTF8 for it
    assert b"\n" not in wire.replace(b"\r\n", b"")
    assert wire.startswith(b"Message-ID: <nt-0123@referrals.local>\r\n")


def test_text_outside_ascii_reads_back_as_written() -> None:
    subject = "Merci, Zoë: votre ami s'est inscrit — " + " ".join(["très"] * 40)  # folds
    email = _email(
        _message(display_name="Zoë Ångström"),
        html="<p>Grüße, Zoë</p>",
        subject=subject,
        text="Grüße, Zoë\nLine two\n",
    )
    assert email["Subject"] == subject
    assert email["To"].addresses[0].display_name == "Zoë Ångström"
    assert email["To"].addresses[0].addr_spec == "alex@example.com"
    plain = email.get_body(preferencelist=("plain",))
    html = email.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    assert plain.get_content().splitlines() == ["Grüße, Zoë", "Line two"]  # type: ignore[attr-defined]
    assert html.get_content().strip() == "<p>Grüße, Zoë</p>"  # type: ignore[attr-defined]


def test_a_body_line_longer_than_smtp_allows_is_quoted_printable() -> None:
    line = "x" * 1500
    email = _email(_message(), html=None, text=line)
    assert email["Content-Transfer-Encoding"] == "quoted-printable"
    assert email.get_content().strip() == line  # type: ignore[attr-defined]
    assert max(len(w) for w in _wire(_message(), html=None, text=line).split(b"\r\n")) <= 998


def test_display_names_with_specials_are_quoted_and_addresses_outside_dot_atoms_parsed() -> None:
    email = _email(_message(display_name='Doe, Alex "AJ"', email='"alex doe"@example.com'))
    [to] = email["To"].addresses
    assert (to.display_name, to.addr_spec) == ('Doe, Alex "AJ"', '"alex doe"@example.com')
    assert _email(_message(display_name=""))["To"] == "alex@example.com"


def test_a_from_address_that_cannot_be_a_header_is_a_permanent_failure() -> None:
    with pytest.raises(PermanentFailure) as err:
        smtp.build_email(
            _message(),
            RenderedMessage("s", "t", None),
            from_address="a@b.c\nBcc: x@y.z",
            domain="d",
            unsubscribe_url="http://u",
            now=NOW,
        )
    assert err.value.reason == "BAD_ADDRESS"
