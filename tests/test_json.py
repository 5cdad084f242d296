from __future__ import annotations

import importlib
import sys

import pytest

import provider_proxy._json as json_module


def test_round_trip_and_invalid_input() -> None:
    value = {"a": [1, 2.5, None, True], "é": "ü"}
    assert json_module.loads(json_module.dumps(value)) == value
    with pytest.raises(ValueError):  # noqa: PT011 - both backends' errors are ValueErrors
        json_module.loads(b"{not json")


def test_standard_library_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "orjson", None)
    fallback = importlib.reload(json_module)
    try:
        assert fallback.dumps({"a": "é"}) == '{"a":"é"}'.encode()
        assert fallback.loads(b'{"a": 1}') == {"a": 1}
        with pytest.raises(ValueError):  # noqa: PT011
            fallback.loads(b"{not json")
    finally:
        monkeypatch.undo()
        importlib.reload(json_module)
