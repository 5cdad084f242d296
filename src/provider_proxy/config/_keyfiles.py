"""Keys kept in files, read again when the file changes, so keys rotate without a restart.

A :class:`KeyFile` is an adapter's ``api_key`` callable: it looks at the file's
modification time at most once per ``interval`` seconds, and at once after
:func:`reload_all` (what ``serve`` runs on ``SIGHUP``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path

from .._secret import Secret

logger = logging.getLogger("provider_proxy")

_WATCHED: weakref.WeakSet[Watched] = weakref.WeakSet()
_LOCK = threading.Lock()


class Watched:
    """A file read again when its modification time changes, checked at most every ``interval``."""

    def __init__(self, path: str | Path, interval: float) -> None:
        self.path = Path(path)
        self.interval = interval
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self._text = ""
        self._read(first=True)
        _WATCHED.add(self)

    def _read(self, *, first: bool = False) -> None:
        stat = self.path.stat()  # a missing file at start is an error for the caller
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            self._text = self.path.read_text(encoding="utf-8")
            self._stamp = stamp
            if not first:
                logger.warning("reloaded the key file %s", self.path)
                self.changed()
        self._checked = time.monotonic()

    def changed(self) -> None:
        """Called after the text changed (not on the first read)."""

    def check(self, force: bool = False) -> None:
        """Read the file again if it changed (at most once per ``interval`` unless ``force``)."""
        if not force and (self.interval <= 0 or time.monotonic() - self._checked < self.interval):
            return
        with _LOCK:
            try:
                self._read()
            except OSError as exc:  # keep the last good keys: a rotation may be half done
                self._checked = time.monotonic()
                logger.warning("could not read the key file %s: %s", self.path, exc.strerror)

    @property
    def text(self) -> str:
        self.check()
        return self._text


class KeyFile(Watched):
    """A provider key in a file (its first non-empty line), as an ``api_key`` callable."""

    def __repr__(self) -> str:
        return f"KeyFile({str(self.path)!r})"

    def __call__(self) -> Secret | None:
        for line in self.text.splitlines():
            if line.strip():
                return Secret(line.strip())
        return None


class ClientKeysFile(Watched):
    """Client keys in a file, one a line: ``KEY [NAME]`` or ``sha256:HEX [NAME]``.

    Lines starting with ``#`` are comments. ``on_change`` gets the new keys
    (identity by SHA-256 hex digest) when the file changes.
    """

    def __init__(
        self,
        path: str | Path,
        interval: float,
        on_change: Callable[[dict[str, str]], None] | None = None,
    ) -> None:
        self.on_change = on_change
        super().__init__(path, interval)

    def __repr__(self) -> str:
        return f"ClientKeysFile({str(self.path)!r})"

    def hashes(self) -> dict[str, str]:
        """SHA-256 hex digest of each key to its identity name."""
        found: dict[str, str] = {}
        for number, line in enumerate(self._text.splitlines(), 1):
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            first, name = words[0], (words[1] if len(words) > 1 else f"client-{number}")
            if first.startswith("sha256:"):
                digest = first[len("sha256:") :].lower()
            else:
                digest = hashlib.sha256(first.encode("utf-8")).hexdigest()
            found[digest] = name
        return found

    def changed(self) -> None:
        if self.on_change is None:
            return
        hashes = self.hashes()
        if not hashes:  # an emptied file locks everyone out: more likely a rotation half done
            logger.warning("the client key file %s holds no key; the last keys stay", self.path)
            return
        try:
            self.on_change(hashes)
        except ValueError as exc:
            logger.warning("the client key file %s was not applied: %s", self.path, exc)


def reload_all() -> None:
    """Read every watched key file again now (``SIGHUP``)."""
    for watched in list(_WATCHED):
        watched.check(force=True)


def poll_all() -> None:
    """Check every watched file that is due (run periodically by ``serve``)."""
    for watched in list(_WATCHED):
        watched.check()


class EnvironmentKey:
    """A provider key read from ``os.environ`` at each use: the first of ``names`` set."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names

    def __repr__(self) -> str:
        return f"EnvironmentKey({', '.join(self.names)})"

    def __call__(self) -> Secret | None:
        for name in self.names:
            value = os.environ.get(name)
            if value:
                return Secret(value)
        return None


def environ_key(names: tuple[str, ...]) -> EnvironmentKey:
    """The key of the first of ``names`` in the environment, at each call."""
    return EnvironmentKey(names)


class EnvironmentFile(Watched):
    """``NAME=value`` lines put in ``os.environ`` (over what was there), and again when
    the file changes; names the file no longer has are removed.

    Blank lines and ``#`` comments are skipped; ``export`` and quotes are allowed,
    as in a systemd ``EnvironmentFile`` or a ``.env`` file.
    """

    def __init__(self, path: str | Path, interval: float) -> None:
        self._applied: set[str] = set()
        super().__init__(path, interval)
        self.apply()

    def __repr__(self) -> str:
        return f"EnvironmentFile({str(self.path)!r})"

    def values(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for line in self._text.splitlines():
            text = line.strip()
            if not text or text.startswith("#") or "=" not in text:
                continue
            name, _, value = text.removeprefix("export ").partition("=")
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            found[name.strip()] = value
        return found

    def apply(self) -> None:
        values = self.values()
        for gone in self._applied - set(values):
            os.environ.pop(gone, None)
        os.environ.update(values)
        self._applied = set(values)

    def changed(self) -> None:
        self.apply()
