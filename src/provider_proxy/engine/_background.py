"""Background responses: answered at once, run by the app, fetched and cancelled by id.

A Responses request with ``background: true`` on a model the gateway serves
itself (translated, or routed) is answered at once with the response object in
status ``queued``. The request then runs in a task the app owns, as an
ordinary gateway request of the same client (guards, routing, translation,
usage and events as any), and its response object is kept in the app's store
as it goes: ``queued`` -> ``in_progress`` -> ``completed`` (or ``incomplete``,
``failed``, ``cancelled``), with its output and usage once it finished. So
``GET {mount}/v1/responses/{id}`` shows it from any instance on a shared store.

``POST {mount}/v1/responses/{id}/cancel`` marks it ``cancelled`` in the store
and, on the instance that runs it, stops it at once (the upstream request is
closed); another instance sees the mark within :attr:`BackgroundRuns.poll`
seconds (each run reads it that often). Cancelling a cancelled response
answers it again; a finished one, or one that was not made in the background,
is refused as the API refuses it.

On shutdown a graceful drain (``drain_timeout=``) waits for running ones as
for open requests and aborts them at its timeout; without a drain they are
aborted when the app closes. Either way an aborted one ends ``failed``.
Records live as long as kept responses (:attr:`StoredResponses.ttl`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel

from .._exceptions import BadRequest, ProxyError
from .._json import dumps, loads
from ..observe import SSEParser
from ..policy import REQUEST_ID
from ..state import Store
from ..types import Message, Receive, Send
from ._background_events import EventLog, follow
from ._drain import Drain
from ._report import Arrival, Outcome, Report
from ._responses_state import AnswerNotFound, StoredResponses

logger = logging.getLogger("provider_proxy")

#: Runs the request, answering into the ``send`` it is given.
Run = Callable[[Send], Awaitable[Report]]

#: Statuses of a response that is over.
_OVER = frozenset({"completed", "incomplete", "failed", "cancelled"})

_SHUT_DOWN = "The proxy shut down before the response was complete."


class BackgroundRuns:
    """The app's background responses: their records in ``store``, and the tasks here.

    :param poll: seconds between a run's reads of its cancel mark (set by any instance).
    """

    def __init__(self, store: Store, config: StoredResponses, *, poll: float = 0.25) -> None:
        self._store = store
        self.config = config
        self.poll = poll
        #: Emits a finished run's event (the app's).
        self.finish: Callable[[Arrival, Report], None] | None = None
        #: The app's drain, which waits for runs as for open requests.
        self.drain: Drain | None = None
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    @staticmethod
    def _who(identity: str | None) -> str:
        return hashlib.sha256((identity or "").encode()).hexdigest()[:24]

    def _key(self, identity: str | None, response_id: str) -> str:
        return f"pp:background:{self._who(identity)}:{response_id}"

    def _mark(self, identity: str | None, response_id: str) -> str:
        return f"pp:background:cancel:{self._who(identity)}:{response_id}"

    def _events(self, identity: str | None, response_id: str) -> str:
        return f"pp:background:events:{self._who(identity)}:{response_id}"

    @property
    def running(self) -> int:
        """How many runs this instance has now."""
        return len(self._tasks)

    async def fetch(self, identity: str | None, response_id: str) -> dict[str, Any] | None:
        """The response object of this client's background response, if it is one."""
        raw = await self._store.get(self._key(identity, response_id))
        if not raw:
            return None
        record: dict[str, Any] = loads(raw)
        return record

    async def forget(self, identity: str | None, response_id: str) -> bool:
        """Delete the record (a tombstone); whether there was one. A running one is stopped."""
        if await self.fetch(identity, response_id) is None:
            return False
        await self._store.set(self._key(identity, response_id), b"", self.config.ttl)
        await self._store.set(self._mark(identity, response_id), b"1", self.config.ttl)
        scope = self._scopes.get(self._key(identity, response_id))
        if scope is not None:
            scope.cancel()
        return True

    async def _write(self, identity: str | None, record: dict[str, Any]) -> None:
        await self._store.set(self._key(identity, record["id"]), dumps(record), self.config.ttl)

    async def start(
        self,
        identity: str | None,
        queued: dict[str, Any],
        run: Run,
        arrival: Arrival,
        live: Live | None = None,
    ) -> None:
        """Keep ``queued`` (a response object) and run the request in a task of the app.

        :param live: the client's stream, for a run created with ``stream``: its
            events go there while the client stays, and are kept to be resumed.
        """
        if self._closing:
            raise ProxyError("The proxy is shutting down.")
        await self._write(identity, queued)
        log = None
        if live is not None:
            key = self._events(identity, queued["id"])
            log = EventLog(self._store, key, self.config.ttl, self.config.max_bytes)
            await self._store.set(f"{key}:count", b"0", self.config.ttl)
        task = asyncio.get_running_loop().create_task(
            self._run(identity, dict(queued), run, arrival, live, log)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel(self, identity: str | None, response_id: str) -> dict[str, Any]:
        """Cancel this client's background response; its response object, ``cancelled``.

        :raises BadRequest: it finished, or it was not made in the background.
        :raises AnswerNotFound: the client has no such response.
        """
        record = await self.fetch(identity, response_id)
        if record is None:
            raise AnswerNotFound(f"No background response with id {response_id!r} was found.")
        status = record.get("status")
        if status == "cancelled":
            return record  # idempotent
        if status in _OVER:
            raise BadRequest(f"Cannot cancel a response with status {status!r}.")
        record["status"] = "cancelled"
        await self._write(identity, record)
        await self._store.set(self._mark(identity, response_id), b"1", self.config.ttl)
        scope = self._scopes.get(self._key(identity, response_id))
        if scope is not None:  # run here: stopped now
            scope.cancel()
        return record

    async def stream(
        self,
        identity: str | None,
        queued: dict[str, Any],
        run: Run,
        run_arrival: Arrival,
        receive: Receive,
        send: Send,
        arrival: Arrival,
    ) -> Outcome:
        """Start a streamed background response and stream its events to its client
        while it stays (leaving does not stop the run); they are kept, to be resumed.
        ``run_arrival``: the run's, for its event; ``arrival``: the request's."""
        await send(_stream_start(arrival.request_id))
        live = Live(send)
        await self.start(identity, queued, run, run_arrival, live)
        try:
            async with anyio.create_task_group() as group:

                async def gone() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    live.open = False
                    group.cancel_scope.cancel()

                group.start_soon(gone)
                await live.done.wait()
                group.cancel_scope.cancel()
        finally:
            still, live.open = live.open, False
        if still:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        return Outcome(200, streamed=True)

    async def resume(
        self,
        identity: str | None,
        response_id: str,
        after: str | None,
        send: Send,
        arrival: Arrival,
    ) -> Outcome:
        """Stream the kept events of a streamed background response after the sequence
        number ``after``, then follow it until it is over.

        :raises BadRequest: it was not created with ``stream``, or ``after`` is no number.
        """
        after = after or "-1"
        if not after.removeprefix("-").isdigit():
            raise BadRequest(f"starting_after must be a sequence number, not {after!r}.")
        key = self._events(identity, response_id)
        if await self._store.get(f"{key}:count") is None:
            raise BadRequest(
                "This response was not created with stream=true: GET it without stream."
            )

        async def over() -> bool:
            record = await self.fetch(identity, response_id)
            return record is None or record.get("status") in _OVER

        await send(_stream_start(arrival.request_id))
        size = 0
        async for event in follow(self._store, key, int(after), over, self.poll):
            size += len(event)
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return Outcome(200, streamed=True, response_bytes=size)

    async def _run(
        self,
        identity: str | None,
        record: dict[str, Any],
        run: Run,
        arrival: Arrival,
        live: Live | None,
        log: EventLog | None,
    ) -> None:
        key = self._key(identity, record["id"])
        capture = _Capture(self.config.max_bytes, record, live, log)
        scope = self._scopes[key] = anyio.CancelScope()
        report: Report | None = None
        aborted = False
        try:
            tracking = (
                self.drain.track(capture) if self.drain is not None else contextlib.nullcontext()
            )
            with tracking as tracked:
                send = capture if tracked is None else tracked.send
                with scope:
                    now = await self.fetch(identity, record["id"])
                    if now is None or now.get("status") != "queued":
                        scope.cancel()  # cancelled (or deleted) before it began
                        await anyio.lowlevel.checkpoint()
                    record["status"] = "in_progress"
                    await self._write(identity, record)
                    async with anyio.create_task_group() as group:
                        group.start_soon(self._watch, identity, record["id"], scope)
                        if log is not None:
                            group.start_soon(self._flush_every, log)
                        try:
                            report = await run(send)
                        except ProxyError as error:
                            capture.error = {"code": error.kind, "message": error.message}
                        group.cancel_scope.cancel()
            aborted = tracked is not None and tracked.aborted
        except Exception:
            logger.exception("the background response %s failed", record["id"])
            capture.error = {"code": "server_error", "message": "The response failed."}
        finally:
            self._scopes.pop(key, None)
            with anyio.CancelScope(shield=True):
                await self._settle(identity, record, capture, scope, aborted or self._closing)
                self._emit(arrival, report, scope)
            if live is not None:
                live.done.set()

    async def _flush_every(self, log: EventLog) -> None:
        while True:
            await anyio.sleep(self.poll)
            await log.flush()

    async def _watch(
        self, identity: str | None, response_id: str, scope: anyio.CancelScope
    ) -> None:
        """Stop the run when any instance marked it cancelled."""
        mark = self._mark(identity, response_id)
        while True:
            await anyio.sleep(self.poll)
            if await self._store.get(mark):
                scope.cancel()
                return

    async def _settle(
        self,
        identity: str | None,
        record: dict[str, Any],
        capture: _Capture,
        scope: anyio.CancelScope,
        shut_down: bool,
    ) -> None:
        """Keep the run's final response object (a cancel already kept its own)."""
        try:
            if capture.log is not None:
                await capture.log.flush()
            now = await self.fetch(identity, record["id"])
            if now is None or now.get("status") == "cancelled":
                return  # cancelled or deleted meanwhile
            final = capture.response
            if final is not None and final.get("status") in _OVER and not scope.cancel_called:
                record.update(
                    {k: v for k, v in final.items() if k not in ("id", "created_at", "background")}
                )
            else:
                record["status"] = "failed"
                record["error"] = capture.error or {
                    "code": "server_error",
                    "message": _SHUT_DOWN if shut_down else "The response did not complete.",
                }
                await capture.emit("response.failed", {"response": record})
                if capture.log is not None:
                    await capture.log.flush()
            await self._write(identity, record)
        except Exception:
            logger.warning(
                "could not store the background response %s", record["id"], exc_info=True
            )

    def _emit(self, arrival: Arrival, report: Report | None, scope: anyio.CancelScope) -> None:
        if self.finish is None:
            return
        if report is None:  # stopped (cancelled, or aborted) before the exchange reported
            kind = "cancelled" if scope.cancel_called else "background_failed"
            report = Report(Outcome(499 if scope.cancel_called else 500, error_kind=kind))
        self.finish(arrival, report)

    async def aclose(self) -> None:
        """Abort the runs still going (after any drain), and wait for them to settle."""
        self._closing = True
        for scope in list(self._scopes.values()):
            scope.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)


class Live:
    """The stream of the client that created a streamed background response: fed by
    the run while :attr:`open`; :attr:`done` is set when the run is over."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.open = True
        self.done = anyio.Event()


class _Capture:
    """The ``send`` a run answers into: it keeps the last response object the stream
    carried, or the error an error answer said; each event of a streamed one goes
    to the live client and the log too (its response object as the record shows it)."""

    def __init__(
        self,
        max_size: int,
        record: dict[str, Any] | None = None,
        live: Live | None = None,
        log: EventLog | None = None,
    ) -> None:
        self._parser = SSEParser(max_size)
        self._status = 200
        self._body: list[bytes] = []
        self._record = record or {}
        self._live = live
        self.log = log
        self._sequence = -1
        self.response: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None

    async def emit(self, name: str, data: dict[str, Any]) -> None:
        """One event to the live client and the log, numbered after the last."""
        if self._live is None and self.log is None:
            return
        response = data.get("response")
        if isinstance(response, dict):
            created = self._record.get("created_at", response.get("created_at"))
            data["response"] = dict(response, background=True, created_at=created)
        sequence = data.get("sequence_number")
        if not isinstance(sequence, int):
            sequence = data["sequence_number"] = self._sequence + 1
        self._sequence = max(self._sequence, sequence)
        data.setdefault("type", name)
        event = b"event: " + name.encode() + b"\ndata: " + dumps(data) + b"\n\n"
        if self.log is not None:
            self.log.add(sequence, event)
        live = self._live
        if live is not None and live.open:
            try:
                await live.send({"type": "http.response.body", "body": event, "more_body": True})
            except Exception:  # the client left: the run goes on
                live.open = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._status = int(message["status"])
            return
        chunk: bytes = message.get("body", b"")
        if self._status >= 400:
            self._body.append(chunk)
            if not message.get("more_body", False):
                self.error = _error_of(b"".join(self._body))
            return
        for event in self._parser.feed(chunk):
            try:
                data = loads(event.data)
            except ValueError:
                continue
            if not isinstance(data, dict):
                continue
            if isinstance(data.get("response"), dict):
                self.response = data["response"]
            elif data.get("type") == "error":
                self.error = {"code": data.get("code"), "message": data.get("message")}
            name = event.event if event.event != "message" else str(data.get("type", "message"))
            await self.emit(name, data)


def _error_of(raw: bytes) -> dict[str, Any]:
    """An error answer's code and message, as a response object's ``error``."""
    try:
        error = loads(raw).get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    message = error.get("message") if isinstance(error, dict) else None
    code = (error.get("code") or error.get("type")) if isinstance(error, dict) else None
    return {
        "code": code or "server_error",
        "message": message if isinstance(message, str) else "The response failed.",
    }


def _stream_start(request_id: str) -> Message:
    """The head of an event stream the proxy answers itself."""
    headers = [
        (b"content-type", b"text/event-stream"),
        (b"cache-control", b"no-cache"),
        (REQUEST_ID, request_id.encode("ascii")),
    ]
    return {"type": "http.response.start", "status": 200, "headers": headers}
