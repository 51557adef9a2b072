"""Rendering a planned message with marketing's templates (Jinja2 in a sandbox).

Here, not in the pure core: templating runs a template engine, and the core stays standard
library only. The core says which message and with which values; this fills the template.
"""

from __future__ import annotations

from referrals.programs import templating
from referrals.programs.model import ProgramDocument
from services.notifications.domain.messages import Message, RenderedMessage


def render(
    message: Message, program: ProgramDocument, *, unsubscribe_url: str, refer_url: str
) -> RenderedMessage:
    """The message in the program's template for its kind and locale (falling back by language,
    then to the program's default locale). Raises `templating.TemplateProblem` if it fails."""
    template = program.notifications.template(message.kind, message.locale)
    context = {**message.context, "unsubscribe_url": unsubscribe_url, "refer_url": refer_url}
    # Values come from profiles: a display name holding a line break must not split the header.
    subject = " ".join(templating.render(template.subject, context).split())
    text = templating.render(template.text, context)
    html = None if template.html is None else templating.render(template.html, context, html=True)
    return RenderedMessage(subject, text, html)
