"""provider_proxy's benchmark suite: ``nox -s bench`` or ``python -m benchmarks``.

Every scenario runs straight against a fake upstream (direct), through a minimal
aiohttp passthrough (the floor for a Python proxy) and through the proxy, in the
same run, so the results are ratios that hold on a noisy machine. The
``websocket`` scenario does the same for the socket relay: the upstream's echo
direct, through a hand-written socket relay (the floor) and through the proxy's.
See ``docs/performance.rst``.
"""
