from __future__ import annotations

import provider_proxy
import provider_proxy.adapters


def test_all_is_sorted_and_complete() -> None:
    for module in (provider_proxy, provider_proxy.adapters):
        assert module.__all__ == sorted(module.__all__, key=lambda n: (not n.isupper(), n))
        for name in module.__all__:
            assert hasattr(module, name), name
    public = {name for name in dir(provider_proxy) if not name.startswith("_")}
    submodules = {"adapters", "transforms", "types"}
    assert public - submodules <= set(provider_proxy.__all__)


def test_version() -> None:
    assert provider_proxy.__version__.count(".") == 2
