"""Rendering a planned message with marketing's templates (Jinja2 in a sandbox).

Here, not in the pure core: templating runs a template engine, and the core stays standard
library only. The core says which message and with which values; this fills the template.

`render` does the work; `Renderer` does it off the event loop. A template may take up to its
time limit (1 s, `referrals.programs.render_limits`) to be refused, and the event loop must
not stop for it: heartbeats, the other deliveries and the unsubscribe endpoint go on. So the
sender awaits `Renderer.render`, which queues the message and hands the queue to one worker
thread in batches: every message queued while a batch is being rendered goes in the next
one, so the thread hop costs one wake-up per batch rather than per message. A WON's thank-you
(`slots.urgent`) goes in the next batch before every other message waiting (at 1,000
input events/s a thank-you waited a median 26 ms for its render, behind the others).
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from referrals.programs import templating
from referrals.programs.model import ProgramDocument
from services.notifications.adapters.slots import urgent
from services.notifications.domain.messages import Message, RenderedMessage

MAX_BATCH = 256  # messages per hop: bounds how long one batch holds the thread


def render(
    message: Message,
    program: ProgramDocument,
    *,
    unsubscribe_url: str,
    refer_url: str,
    time_limit_s: float = templating.TIME_LIMIT_S,
) -> RenderedMessage:
    """The message in the program's template for its kind and locale (falling back by language,
    then to the program's default locale). Raises `templating.TemplateProblem` if it fails;
    each part (subject, text, html) has `time_limit_s`."""
    template = program.notifications.template(message.kind, message.locale)
    context = {**message.context, "unsubscribe_url": unsubscribe_url, "refer_url": refer_url}
    limit = time_limit_s
    # Values come from profiles: a display name holding a line break must not split the header.
    subject = " ".join(templating.render(template.subject, context, time_limit_s=limit).split())
    text = templating.render(template.text, context, time_limit_s=limit)
    html = (
        None
        if template.html is None
        else templating.render(template.html, context, html=True, time_limit_s=limit)
    )
    return RenderedMessage(subject, text, html)


@dataclass(frozen=True, slots=True)
class _Job:
    message: Message
    program: ProgramDocument
    unsubscribe_url: str
    refer_url: str


Result = RenderedMessage | Exception


def _render_batch(jobs: list[_Job], time_limit_s: float) -> list[Result]:
    """In the worker thread: each job's rendering, or the exception it raised."""
    out: list[Result] = []
    for job in jobs:
        try:
            out.append(
                render(
                    job.message,
                    job.program,
                    unsubscribe_url=job.unsubscribe_url,
                    refer_url=job.refer_url,
                    time_limit_s=time_limit_s,
                )
            )
        except Exception as err:  # a TemplateProblem, or a bug: the awaiting delivery decides
            out.append(err)
    return out


class Renderer:
    """`render` in one worker thread, batched; one instance per sender (per event loop)."""

    def __init__(
        self, max_batch: int = MAX_BATCH, time_limit_s: float = templating.TIME_LIMIT_S
    ) -> None:
        self.max_batch = max_batch
        self.time_limit_s = time_limit_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="templates")
        self._queue: list[tuple[_Job, asyncio.Future[RenderedMessage]]] = []
        self._urgent: list[tuple[_Job, asyncio.Future[RenderedMessage]]] = []  # rendered first
        self._busy = False  # a batch is being rendered (or about to be handed over)
        self.batches = 0  # hops made (for tests and measurements)

    async def render(
        self, message: Message, program: ProgramDocument, *, unsubscribe_url: str, refer_url: str
    ) -> RenderedMessage:
        """As `render`, awaited: raises `templating.TemplateProblem` if the template fails."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[RenderedMessage] = loop.create_future()
        queue = self._urgent if urgent(message) else self._queue
        queue.append((_Job(message, program, unsubscribe_url, refer_url), future))
        if not self._busy:
            self._busy = True
            # Not at once: the deliveries started in this turn of the loop join the batch.
            loop.call_soon(self._hand_over, loop)
        return await future

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        taken = self._urgent[: self.max_batch]
        del self._urgent[: self.max_batch]
        room = self.max_batch - len(taken)
        taken += self._queue[:room]
        del self._queue[:room]
        batch = [(job, f) for job, f in taken if not f.done()]
        if not batch:
            if self._queue or self._urgent:
                loop.call_soon(self._hand_over, loop)
            else:
                self._busy = False
            return
        self.batches += 1
        try:
            jobs = [job for job, _ in batch]
            work = self._executor.submit(_render_batch, jobs, self.time_limit_s)
        except RuntimeError as err:  # closed: the sender is stopping
            for _, future in batch:
                if not future.done():
                    future.set_exception(err)
            self._busy = False
            return

        def done(work: Future[list[Result]]) -> None:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(self._settle, loop, batch, work)

        work.add_done_callback(done)

    def _settle(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: list[tuple[_Job, asyncio.Future[RenderedMessage]]],
        work: Future[list[Result]],
    ) -> None:
        error = RuntimeError("the renderer stopped") if work.cancelled() else work.exception()
        results: list[Result] = (
            [error] * len(batch) if error is not None else work.result()  # type: ignore[list-item]
        )
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # the delivery was cancelled meanwhile
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
        if self._queue or self._urgent:
            self._hand_over(loop)
        else:
            self._busy = False

    def close(self) -> None:
        """Stops the worker once the batch it renders (if any) is done; no new batch starts."""
        self._executor.shutdown(wait=False, cancel_futures=True)
