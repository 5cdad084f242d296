"""``GET {mount}/dashboard``: one self-contained HTML page that plots ``/status`` live.

Off unless ``dashboard=True``. The page (``dashboard.html`` beside this module)
needs nothing from elsewhere: its charts are inline SVG drawn by its own
script, which polls ``{mount}/status`` with the key the page was opened with
(``?key=``), or with the host's cookies under ``authenticate=``. Under guards
only the identities in ``Guards(admins=[...])`` may open it.
"""

from __future__ import annotations

import functools
from importlib import resources

from .._exceptions import Forbidden
from ..guards import Guards
from ..policy import RawHeaders
from ..types import Scope

#: The page may run its own inline script and style and fetch from its own origin; nothing else.
_POLICY = (
    b"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    b"connect-src 'self'; img-src data:; base-uri 'none'; frame-ancestors 'none'"
)


class NotAnAdmin(Forbidden):
    """The dashboard is for the identities the operator marked as admins."""

    kind = "not_an_admin"


@functools.cache
def page() -> bytes:
    """The dashboard's HTML, read once from the package."""
    return resources.files(__package__).joinpath("dashboard.html").read_bytes()


def page_headers() -> RawHeaders:
    """Headers of the page besides the common ones: no caching, no framing, its CSP."""
    return [
        (b"cache-control", b"no-store"),
        (b"content-security-policy", _POLICY),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
    ]


async def admitted(guards: Guards | None, scope: Scope) -> str | None:
    """The identity of an admin opening the dashboard; raises 401 or 403 for anyone else.

    Without guards the dashboard is as open as ``/status``.
    """
    if guards is None:
        return None
    identity = await guards.identify(scope)
    if identity is None or not guards.is_admin(identity):
        raise NotAnAdmin(
            "The dashboard is for the proxy's admins; the operator lists them in "
            "Guards(admins=[...])."
        )
    return identity
