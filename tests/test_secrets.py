"""Configured credentials are masked in every message and log line the proxy writes."""

from __future__ import annotations

import logging

import pytest

from provider_proxy import ProxyError, Secret, _scrub, make_asgi_app
from provider_proxy._scrub import MASK, scrub
from provider_proxy.adapters import OpenAIAdapter

KEY = "sk-registered-0123456789"


@pytest.fixture
def proxy_logger(caplog: pytest.LogCaptureFixture) -> logging.Logger:
    """The proxy's logger, with the filter a built app installs on it."""
    make_asgi_app([OpenAIAdapter(api_key=KEY)], validate_credentials="off")
    caplog.set_level(logging.DEBUG, logger="provider_proxy")
    return logging.getLogger("provider_proxy")


def test_the_app_installs_a_filter_that_masks_a_configured_key(
    proxy_logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    proxy_logger.warning("upstream said: %s", f"bad status line b'Bearer {KEY}\\r\\n'")
    assert KEY not in caplog.text
    assert f"Bearer {MASK}" in caplog.text
    assert KEY not in caplog.records[-1].getMessage()


def test_the_filter_masks_exception_text(
    proxy_logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    try:
        raise RuntimeError(f"the upstream quoted {KEY}")
    except RuntimeError:
        proxy_logger.exception("could not prepare the request")
    assert "RuntimeError: the upstream quoted ***" in caplog.text
    assert KEY not in caplog.text
    assert caplog.records[-1].exc_info is None  # no handler can format the original


def test_the_filter_masks_credential_headers_quoted_back(
    proxy_logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    echo = (
        b"POST /v1 HTTP/1.1\r\nAuthorization: Bearer never-configured-token\r\n"
        b"x-api-key: other-token\r\n"
    )
    proxy_logger.warning("illegal status line: %r", echo)
    assert "never-configured-token" not in caplog.text
    assert "other-token" not in caplog.text
    assert "POST /v1" in caplog.text


def test_the_access_loggers_records_are_filtered_too(
    proxy_logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    logging.getLogger("provider_proxy.access").info("line with %s", KEY)
    assert "line with ***" in caplog.text
    assert KEY not in caplog.text


def test_keys_from_a_callable_are_registered_when_used() -> None:
    rotated = "sk-rotated-key-9876543210"
    assert scrub(f"x {rotated}") == f"x {rotated}"
    adapter = OpenAIAdapter(api_key=lambda: rotated)
    assert adapter.api_key() is not None
    assert scrub(f"x {rotated}") == f"x {MASK}"


def test_a_proxy_errors_message_never_carries_a_configured_key() -> None:
    Secret(KEY)  # as an adapter holds it
    error = ProxyError(f"the upstream refused {KEY}")
    assert KEY not in error.message
    assert KEY not in str(error)
    assert KEY not in repr(error)


def test_short_values_are_not_scrubbed() -> None:
    # A key of a few characters would match ordinary words of every message.
    Secret("tiny")
    assert scrub("a tiny message") == "a tiny message"


def test_the_registry_forgets_the_oldest_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_scrub, "_secrets", {})
    monkeypatch.setattr(_scrub, "MAX_SECRETS", 2)
    for key in ("sk-first-00000000", "sk-second-0000000", "sk-third-00000000"):
        _scrub.register_secret(key)
    assert list(_scrub._secrets) == ["sk-second-0000000", "sk-third-00000000"]
    assert scrub("sk-first-00000000") == "sk-first-00000000"
