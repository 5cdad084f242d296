"""Reading token usage from a response as it is relayed, on a copy of each chunk.

The engine feeds the tap each chunk right after sending it to the client, so
the tap never holds a byte back, and it never raises: any surprise (a body
that is not JSON, a decoding error, a body over the size bound, an extractor
that fails) turns it off for that response, with one debug log line.

What it reads:

* ``text/event-stream``: each event's ``data`` as it completes, parsed as
  JSON and handed to the dialect's readers (``[DONE]`` and data that is
  not a JSON object or array are skipped); usage reports are merged with
  :meth:`Usage.merge <provider_proxy.Usage.merge>`, and the first model named
  is kept. Memory stays bounded by the longest event, and work by
  ``max_total_bytes``: past that much decoded, usage is not read (``None``).
* JSON (``application/json``, ``*/*+json``): a copy of the body up to
  ``max_bytes``, parsed when the response is complete. A top-level array (as
  some providers stream without server-sent events) has each element read in turn.
* ``Content-Encoding`` ``gzip``, ``deflate`` (zlib-wrapped or raw) and ``br``
  (with ``brotli`` or ``brotlicffi`` 1.2 or later, whose decoders can bound
  their output) are decoded incrementally with the output bounded
  (:mod:`provider_proxy._bounded`), so a
  decompression bomb stops the tap, never the relay. Other encodings leave
  the tap off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .._adapter import Usage
from .._bounded import Decoder, TooLarge, decoder_for
from .._json import loads
from ._sse import SSEParser

logger = logging.getLogger("provider_proxy")

#: The most decompressed bytes kept of a JSON body, the longest streamed event
#: read, and the most one compressed chunk may expand to.
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
#: The most decoded bytes of one streamed answer read: past them its usage is not
#: read (the relay goes on), so a paced compressed stream cannot make the tap
#: parse without end.
DEFAULT_MAX_TOTAL_BYTES = 32 * 1024 * 1024


def _is_json(media: str) -> bool:
    return media == "application/json" or media.endswith("+json")


class UsageTap:
    """The usage and model of one response, read from a copy of the relayed bytes.

    :param extract_usage: the dialect's usage reader for one parsed payload.
    :param extract_model: the dialect's model reader for one parsed payload.
    :param content_type: the response's ``Content-Type``; only event streams and
        JSON are read.
    :param content_encoding: the response's ``Content-Encoding``, if any.
    :param max_bytes: the most (decompressed) bytes kept of a JSON body, the
        longest event read, and the most one chunk may decompress to.
    :param max_total_bytes: the most (decompressed) bytes of a stream read; past
        them the tap stops and reports no usage.
    :param usage_hint: a substring every event carrying usage contains (for
        the built-in readers, :data:`~provider_proxy.adapters._usage.USAGE_HINT`).
        Once the model is known, events without it are not parsed. ``None``
        parses every event.
    :param model_hint: likewise for the model (``"model"`` for the built-in
        readers); with ``usage_hint``, events with neither are not parsed.
    :param extract_finish: the dialect's reader of why the answer ended, if wanted.
    :param finish_hint: a substring of every event ``extract_finish`` reads.
    """

    __slots__ = (
        "_body",
        "_decoder",
        "_extract_finish",
        "_extract_model",
        "_extract_usage",
        "_finish_hint",
        "_max_bytes",
        "_max_total_bytes",
        "_model",
        "_model_hint",
        "_parser",
        "_size",
        "_usage",
        "_usage_hint",
        "active",
        "finish_reasons",
        "streamed",
    )

    def __init__(
        self,
        extract_usage: Callable[[Any], Usage | None],
        extract_model: Callable[[Any], str | None],
        *,
        content_type: str | None,
        content_encoding: str | None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
        usage_hint: str | None = None,
        model_hint: str | None = None,
        extract_finish: Callable[[Any], tuple[str, ...]] | None = None,
        finish_hint: str | None = None,
    ) -> None:
        self._extract_usage = extract_usage
        self._extract_model = extract_model
        self._extract_finish = extract_finish
        self._finish_hint = finish_hint if extract_finish is not None else None
        #: Why the answer ended, as the provider said (once per choice), when read.
        self.finish_reasons: tuple[str, ...] = ()
        self._max_bytes = max_bytes
        self._max_total_bytes = max_total_bytes
        self._usage_hint = usage_hint
        self._model_hint = model_hint
        self._usage: Usage | None = None
        self._model: str | None = None
        self._body: list[bytes] = []
        self._size = 0
        media = (content_type or "").partition(";")[0].strip().lower()
        #: Whether the response is a stream of server-sent events.
        self.streamed = media == "text/event-stream"
        self._parser = SSEParser(max_bytes) if self.streamed else None
        decoder = decoder_for(content_encoding)
        self._decoder: Decoder | None = decoder or None
        #: ``False`` once the tap gave up on this response (or never wanted it).
        self.active = decoder is not False and (self.streamed or _is_json(media))

    def feed(self, chunk: bytes) -> None:
        """Read a copy of one chunk the client was just sent; never raises."""
        if not self.active:
            return
        try:
            self._feed(chunk)
        except TooLarge:
            self._usage = None  # what was read of an answer cut short would undercount
            self._stop(
                f"it decodes to more than {self._max_bytes} bytes at once or "
                f"{self._max_total_bytes} in all"
            )
        except Exception as exc:
            # Only the type: a message could quote the body.
            self._stop(f"{type(exc).__name__} while reading it")

    def _feed(self, chunk: bytes) -> None:
        parser = self._parser
        # A JSON body is kept, so max_bytes bounds it; a stream is read up to max_total_bytes.
        room = (self._max_bytes if parser is None else self._max_total_bytes) - self._size
        if self._decoder is not None:
            chunk = self._decoder.decode(chunk, min(room, self._max_bytes))
        elif len(chunk) > room:
            raise TooLarge
        self._size += len(chunk)
        if parser is None:  # a JSON body: keep a copy, read at the end
            self._body.append(chunk)
            return
        usage_hint, model_hint, finish_hint = self._usage_hint, self._model_hint, self._finish_hint
        for event in parser.feed(chunk):
            data = event.data
            if not data or data[0] not in "{[" or data == "[DONE]":
                continue
            if (
                usage_hint is not None
                and usage_hint not in data
                and (self._model is not None or (model_hint is not None and model_hint not in data))
                and (finish_hint is None or finish_hint not in data)
            ):
                continue
            self._read(loads(data))

    def _read(self, payload: Any) -> None:
        for item in payload if isinstance(payload, list) else (payload,):
            usage = self._extract_usage(item)
            if usage is not None:
                self._usage = usage if self._usage is None else self._usage.merge(usage)
            if self._model is None:
                model = self._extract_model(item)
                if isinstance(model, str) and model:
                    self._model = model
            if self._extract_finish is not None:
                reasons = self._extract_finish(item)
                if reasons:
                    self.finish_reasons += reasons

    def _stop(self, why: str) -> None:
        self.active = False
        self._body = []
        self._parser = None
        self._decoder = None
        logger.debug("not reading token usage from this response: %s", why)

    def result(self) -> tuple[Usage | None, str | None]:
        """The usage and the model read so far: call it once the response is done.

        A tap that gave up still returns what streamed events reported before,
        unless the answer was too large to read: then usage is ``None``.
        """
        if self.active and self._parser is None and self._body:
            body = b"".join(self._body)
            self._body = []
            try:
                self._read(loads(body))
            except Exception as exc:
                self._stop(f"{type(exc).__name__} while reading it")
        return self._usage, self._model
