"""``botfleet notify test``: send a test event to every NOTIFY_WEBHOOK_URLS receiver now.

Straight to the receivers, not through the outbox, so the answer is seen at once: each
receiver's status (or error) is printed. Exit codes: 0 every receiver answered 2xx, 1 one did
not, 2 notifications are not configured.
"""

from __future__ import annotations

import asyncio
import getpass

import typer

from botfleet.cli.common import EXIT_CONFIG, fail, settings_or_exit
from botfleet.notify.events import CONTENT_TYPE, test_event
from botfleet.notify.outbox import notifier_for
from botfleet.notify.signing import headers
from botfleet.store.models import utcnow

app = typer.Typer(no_args_is_help=True, help="Webhook notifications.")


@app.command("test")
def send_test(
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds to wait for each receiver."),
) -> None:
    """Send a signed test event (io.botfleet.notify.test) to every receiver."""
    settings = settings_or_exit()
    notifier = notifier_for(settings)
    if notifier is None:
        fail("NOTIFY_WEBHOOK_URLS is not set: there is no receiver", EXIT_CONFIG)
    now = utcnow()
    event = test_event(source=notifier.source, time=now, actor=f"cli:{getpass.getuser()}")
    body = event.body.encode()
    signed = headers(notifier.key, event.id, int(now.timestamp()), body)

    async def send() -> list[tuple[str, str, bool]]:
        import httpx  # here: `botfleet serve` loads this module too, and never sends from it

        async with httpx.AsyncClient(timeout=timeout) as http:

            async def one(url: str) -> tuple[str, str, bool]:
                try:
                    answer = await http.post(
                        url, content=body, headers={"content-type": CONTENT_TYPE, **signed}
                    )
                except httpx.HTTPError as exc:
                    return url, f"{type(exc).__name__}: {exc}", False
                return url, f"HTTP {answer.status_code}", 200 <= answer.status_code < 300

            return list(await asyncio.gather(*(one(u) for u in notifier.urls)))

    outcomes = asyncio.run(send())
    for url, what, ok in outcomes:
        typer.echo(f"{'ok  ' if ok else 'FAIL'} {url}: {what} (event {event.id})")
    if not all(ok for _, _, ok in outcomes):
        raise typer.Exit(1)
