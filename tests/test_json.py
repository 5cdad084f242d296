from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest

import provider_proxy._json as json_module

DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.fixture(params=["orjson", "stdlib"])
def backend(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ModuleType]:
    """``provider_proxy._json`` with orjson, and as it is when orjson is not installed."""
    if request.param == "orjson":
        yield json_module
        return
    monkeypatch.setitem(sys.modules, "orjson", None)
    try:
        yield importlib.reload(json_module)
    finally:
        monkeypatch.undo()
        importlib.reload(json_module)


def test_round_trip_and_invalid_input(backend: ModuleType) -> None:
    value = {"a": [1, 2.5, None, True], "é": "ü"}
    assert backend.dumps(value) == '{"a":[1,2.5,null,true],"é":"ü"}'.encode()
    assert backend.loads(backend.dumps(value)) == value
    with pytest.raises(ValueError):  # noqa: PT011 - both backends' errors are ValueErrors
        backend.loads(b"{not json")


def test_standard_library_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "orjson", None)
    fallback = importlib.reload(json_module)
    try:
        assert (fallback.dumps, fallback.loads) == (fallback._stdlib_dumps, fallback._stdlib_loads)
        assert fallback.dumps({"a": "é"}) == '{"a":"é"}'.encode()
        assert fallback.loads(b'{"a": 1}') == {"a": 1}
    finally:
        monkeypatch.undo()
        importlib.reload(json_module)
    assert json_module.loads is not json_module._stdlib_loads


def test_input_nested_too_deeply_is_a_value_error(backend: ModuleType) -> None:
    with pytest.raises(ValueError, match="depth limit exceeded"):
        backend.loads(DEEP)
    with pytest.raises(ValueError, match="depth limit exceeded"):
        backend.loads(DEEP.decode("ascii"))


def test_values_nested_deeper_than_orjson_writes_are_serialised(backend: ModuleType) -> None:
    # orjson reads 1024 levels and writes 254; what it read can be written again.
    nested = b"[" * 300 + b"]" * 300
    assert backend.dumps(backend.loads(nested)) == nested


def test_values_nested_too_deeply_to_serialise_are_a_value_error(backend: ModuleType) -> None:
    value: list[object] = []
    for _ in range(100_000):
        value = [value]
    with pytest.raises(ValueError, match="nested too deeply"):
        backend.dumps(value)


def test_integers_beyond_64_bits_are_written_exactly(backend: ModuleType) -> None:
    assert backend.dumps({"seed": 2**70}) == b'{"seed":1180591620717411303424}'


@pytest.mark.parametrize("value", ["\ud800", "a\udfffb"])
def test_lone_surrogates_have_no_json_form(backend: ModuleType, value: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each backend words it its own way
        backend.dumps({"text": value})


def test_values_of_other_types_stay_type_errors(backend: ModuleType) -> None:
    with pytest.raises(TypeError):
        backend.dumps({"a": object()})
