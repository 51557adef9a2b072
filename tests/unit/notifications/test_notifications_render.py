"""Messages render with the program's templates (marketing's content) in the advocate's locale."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace

import pytest
from notifications_builders import NOW, known_advocate, only, program, rewarded, status

from referrals.contract.records import ReferralStatus
from referrals.programs.document import ProgramInvalid
from referrals.programs.model import MessageKind, NotificationChannel, ProgramDocument
from referrals.programs.templating import TemplateProblem
from services.notifications.adapters.rendering import Renderer, render
from services.notifications.domain.messages import Message, sent_record
from services.notifications.domain.plan import on_status

UNSUBSCRIBE = "https://referrals.example.com/unsubscribe?token=t0k3n"
REFER = "https://referrals.example.com/r/ALEX-42"
GERMAN = program(
    templates={
        "LEAD": {
            "de-DE": {
                "subject": "Danke, {{ advocate_name }}!",
                "text": "Ihre Empfehlung hat sich angemeldet.\nAbmelden: {{ unsubscribe_url }}",
                "html": '<p>Danke, {{ advocate_name }}!</p><a href="{{ unsubscribe_url }}">x</a>',
            }
        }
    }
)


def lead_for(doc: ProgramDocument, **profile_changes: object) -> Message:
    state = known_advocate(doc, **profile_changes)
    _, plan = on_status(state, status("r1", ReferralStatus.LEAD), doc, NOW)
    return only(plan)


@pytest.mark.parametrize("locale", ["de-DE", "de_de", "de-AT"])
def test_renders_the_programs_template_for_the_advocates_locale_or_language(locale: str) -> None:
    rendered = render(
        lead_for(GERMAN, locale=locale), GERMAN, unsubscribe_url=UNSUBSCRIBE, refer_url=REFER
    )
    assert rendered.subject == "Danke, Alex Doe!"
    assert rendered.text == f"Ihre Empfehlung hat sich angemeldet.\nAbmelden: {UNSUBSCRIBE}"
    assert rendered.html is not None and UNSUBSCRIBE in rendered.html


@pytest.mark.parametrize("locale", ["fr-FR", None])
def test_other_locales_fall_back_to_the_programs_default(locale: str | None) -> None:
    rendered = render(
        lead_for(GERMAN, locale=locale), GERMAN, unsubscribe_url=UNSUBSCRIBE, refer_url=REFER
    )
    assert rendered.subject == "Thank you: Your friend signed up"
    assert rendered.text.startswith("Hi Alex Doe,\n\nYour friend signed up thanks to you.")
    assert REFER in rendered.text and UNSUBSCRIBE in rendered.text


def test_a_german_default_locale_is_used_for_advocates_without_one() -> None:
    german_lead = {"subject": "Danke, {{ advocate_name }}!", "text": "{{ unsubscribe_url }}"}
    doc = program(default_locale="de-DE", templates={"LEAD": {"de-DE": german_lead}})
    rendered = render(lead_for(doc), doc, unsubscribe_url=UNSUBSCRIBE, refer_url=REFER)
    assert rendered.subject == "Danke, Alex Doe!"


def test_rewarded_default_template_shows_amount_type_and_next_tier() -> None:
    doc = program()
    _, plan = on_status(known_advocate(doc), rewarded("r1", n=2), doc, NOW)
    rendered = render(only(plan), doc, unsubscribe_url=UNSUBSCRIBE, refer_url=REFER)

    assert rendered.subject == "You earned 50.00 USD"
    assert "a reward of 50.00 USD (gift card)." in rendered.text
    assert "1 more successful referral and your reward grows to 75.00 USD." in rendered.text


def test_payout_failed_default_template_is_careful() -> None:
    doc = program()
    failed = status(
        "r1",
        ReferralStatus.PAYOUT_FAILED,
        amount_minor=5_000,
        currency="USD",
        reason="ACCOUNT_CLOSED",
    )
    _, plan = on_status(known_advocate(doc), failed, doc, NOW)
    rendered = render(only(plan), doc, unsubscribe_url=UNSUBSCRIBE, refer_url=REFER)
    assert rendered.subject == "About your 50.00 USD reward"
    assert "Nothing is lost and there is nothing you need to do" in rendered.text


def test_html_part_escapes_what_the_profile_says() -> None:
    doc = program()
    rendered = render(
        named(lead_for(doc), "<b>Alex</b>"), doc, unsubscribe_url=UNSUBSCRIBE, refer_url=REFER
    )
    assert rendered.html is not None
    assert "&lt;b&gt;Alex&lt;/b&gt;" in rendered.html and "<b>" not in rendered.html


def test_subject_never_spans_lines_whatever_the_display_name() -> None:
    lead = {"subject": "Hi {{ advocate_name }}", "text": "{{ unsubscribe_url }}"}
    doc = program(templates={"LEAD": {"en-US": lead}})
    bad = named(lead_for(doc), "A\r\nBcc: everyone@example.com")
    rendered = render(bad, doc, unsubscribe_url=UNSUBSCRIBE, refer_url=REFER)
    assert rendered.subject == "Hi A Bcc: everyone@example.com"


def test_a_template_reaching_for_python_internals_is_refused_by_program_validation() -> None:
    evil = {"subject": "{{ advocate_name.__class__.__mro__ }}", "text": "{{ unsubscribe_url }}"}
    with pytest.raises(ProgramInvalid, match=r"templates\.LEAD\.en-US\.subject"):
        program(templates={"LEAD": {"en-US": evil}})


def test_sent_record_names_the_message_and_the_channel_that_accepted_it() -> None:
    message = lead_for(program())
    record = sent_record(message, NotificationChannel.EMAIL, NOW)
    assert (record.notification_id, record.advocate_id, record.referral_id) == (
        message.notification_id,
        "adv-1",
        "r1",
    )
    assert (record.kind, record.channel, record.sent_at) == ("LEAD", "EMAIL", NOW)


def named(message: Message, display_name: str) -> Message:
    """The message as if the advocate's profile held `display_name`."""
    return replace(message, context={**message.context, "advocate_name": display_name})


# -- off the event loop ---------------------------------------------------------------------------
# Quick with the sample profile (so the program validates), slow with any other advocate's name:
# 10,000 scans of 100,000 characters, far past a short time limit.
SLOW_FOR_REAL_ADVOCATES = (
    "{% set s = 'x' * 100000 %}{% if advocate_name != 'Alex Doe' %}"
    "{% for i in range(1000) %}{% for j in range(10) %}{{ s.count('xy') }}{% endfor %}"
    "{% endfor %}{% endif %}{{ unsubscribe_url }}"
)


async def test_a_slow_template_renders_off_the_event_loop_which_keeps_turning() -> None:
    doc = program(templates={"LEAD": {"en-US": {"subject": "Hi", "text": SLOW_FOR_REAL_ADVOCATES}}})
    renderer = Renderer(time_limit_s=0.3)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    turning = asyncio.create_task(ticker())
    try:
        slow = named(lead_for(doc), "Sam Slow")
        with pytest.raises(TemplateProblem, match=r"took longer than 0\.3 s"):
            await renderer.render(slow, doc, unsubscribe_url=UNSUBSCRIBE, refer_url=REFER)
    finally:
        turning.cancel()
        renderer.close()
    # On the loop, the render would have held it for the whole 0.3 s: not one tick.
    assert ticks >= 5


async def test_messages_queued_together_render_in_one_hop_each_with_its_own_outcome() -> None:
    doc = program(templates={"LEAD": {"en-US": {"subject": "Hi", "text": SLOW_FOR_REAL_ADVOCATES}}})
    renderer = Renderer(time_limit_s=0.05)
    names = [f"Alex Doe{'' if n % 10 else ' the slow'}" for n in range(40)]
    messages = [named(lead_for(doc), name) for name in names]
    try:
        results = await asyncio.gather(
            *(
                renderer.render(m, doc, unsubscribe_url=UNSUBSCRIBE, refer_url=REFER)
                for m in messages
            ),
            return_exceptions=True,
        )
    finally:
        renderer.close()
    assert renderer.batches == 1
    for name, message, result in zip(names, messages, results, strict=True):
        if name.endswith("slow"):
            assert isinstance(result, TemplateProblem)
        else:
            assert result == render(message, doc, unsubscribe_url=UNSUBSCRIBE, refer_url=REFER)


async def test_a_thank_you_renders_before_the_messages_queued_ahead_of_it() -> None:
    # Finding: at 1,000 input events/s a WON's thank-you waited a median 26 ms for its render
    # behind the other messages queued for the one template thread.
    doc = program(templates={"LEAD": {"en-US": {"subject": "Hi", "text": SLOW_FOR_REAL_ADVOCATES}}})
    renderer = Renderer(max_batch=1, time_limit_s=0.2)
    done: list[str] = []

    async def one(message: Message, label: str) -> None:
        with contextlib.suppress(TemplateProblem):
            await renderer.render(message, doc, unsubscribe_url=UNSUBSCRIBE, refer_url=REFER)
        done.append(label)

    try:
        busy = asyncio.create_task(one(named(lead_for(doc), "Sam Slow"), "slow"))
        await asyncio.sleep(0.02)  # the slow one holds the thread; the rest queue behind it
        leads = [asyncio.create_task(one(lead_for(doc), f"lead{n}")) for n in range(3)]
        won = replace(lead_for(doc), kind=MessageKind.WON, notification_id="n-won")
        thanks = asyncio.create_task(one(won, "won"))
        await asyncio.gather(busy, *leads, thanks)
    finally:
        renderer.close()
    assert done == ["slow", "won", "lead0", "lead1", "lead2"]
