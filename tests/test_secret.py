from __future__ import annotations

import pytest

from provider_proxy import Secret


def test_secret_is_masked_everywhere_but_reveal() -> None:
    secret = Secret("sk-live-123")
    assert secret.reveal() == "sk-live-123"
    for shown in (repr(secret), str(secret), f"{secret}", repr([secret]), repr({"k": secret})):
        assert "sk-live-123" not in shown
    assert bool(secret)
    assert not Secret("")


def test_secret_compares_by_value() -> None:
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert Secret("a") != "a"
    assert len({Secret("a"), Secret("a")}) == 1


def test_exception_with_a_secret_does_not_show_it() -> None:
    with pytest.raises(ValueError, match=r"\*\*\*") as info:
        raise ValueError(f"bad key {Secret('sk-live-123')}")
    assert "sk-live-123" not in str(info.value)
