"""LiteLLM's proxy as a comparison target, in a virtual environment of its own.

LiteLLM is never a dependency of provider_proxy, nor installed in the
environment that runs the suite: the gateway scenario runs the ``litellm``
command from a separate venv. That is ``$BENCH_LITELLM`` (the path of a
``litellm`` executable) when set, else a venv under
``~/.cache/provider-proxy-bench/litellm-venv`` (or ``$BENCH_LITELLM_VENV``),
created and filled with ``pip install 'litellm[proxy]'`` on first use. When
it cannot be installed or started, :func:`start` raises :class:`Unavailable`
with the reason, which the scenario reports instead of a number.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .procs import Server, prepare_child, stop

#: What is installed into the venv.
REQUIREMENT = "litellm[proxy]"

#: The model name clients send, and the one LiteLLM routes to Anthropic.
MODEL = "anthropic/claude-x"

_INSTALL_TIMEOUT = 900
_START_TIMEOUT = 180


class Unavailable(RuntimeError):
    """LiteLLM could not be installed or started here; the message says why."""


def _venv() -> Path:
    default = Path.home() / ".cache" / "provider-proxy-bench" / "litellm-venv"
    return Path(os.environ.get("BENCH_LITELLM_VENV", default))


def executable() -> Path:
    """The ``litellm`` command, installing it into its venv first when it is not there."""
    given = os.environ.get("BENCH_LITELLM")
    if given:
        if not Path(given).is_file():
            raise Unavailable(f"BENCH_LITELLM={given} is not a file")
        return Path(given)
    venv = _venv()
    command = venv / "bin" / "litellm"
    if command.is_file():
        return command
    print(f"    installing {REQUIREMENT} into {venv} (once)", file=sys.stderr, flush=True)
    log = venv.with_name(venv.name + "-install.log")
    venv.parent.mkdir(parents=True, exist_ok=True)
    try:
        with log.open("w") as out:
            if not (venv / "bin" / "python").is_file():
                subprocess.run(
                    [sys.executable, "-m", "venv", str(venv)],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    check=True,
                    timeout=120,
                )
            subprocess.run(
                [str(venv / "bin" / "pip"), "install", "--quiet", REQUIREMENT],
                stdout=out,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=_INSTALL_TIMEOUT,
            )
    except (OSError, subprocess.SubprocessError) as exc:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
        raise Unavailable(
            f"pip install '{REQUIREMENT}' failed ({exc}; {' '.join(tail)[:200] or 'no output'})"
        ) from None
    if not command.is_file():
        raise Unavailable(f"pip install '{REQUIREMENT}' installed no litellm command")
    return command


def version(command: Path) -> str:
    """LiteLLM's version, read from its venv."""
    python = command.with_name("python")
    try:
        return subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def start(upstream: str, cpu: int, workdir: Path) -> Server:
    """LiteLLM's proxy on ``cpu``, one worker, routing :data:`MODEL` to the fake at ``upstream``."""
    command = executable()
    config = workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: {MODEL}\n"
        f"      api_base: {upstream}\n"
        "      api_key: dummy\n"
        "litellm_settings:\n"
        "  drop_params: true\n"
        "  telemetry: false\n"
    )
    port = _free_port()
    log = (workdir / "litellm.log").open("w")
    env = {
        **os.environ,
        # No fetch of the model price list at start-up, no telemetry.
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOG": "ERROR",
        # No master key: clients are not authenticated, as they are not by the proxy here.
        "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
    }
    env.pop("PYTHONPATH", None)
    arguments = ["--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(
        [str(command), *arguments, "--num_workers", "1"],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: prepare_child(cpu),
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(url + "/health/liveliness", timeout=2) as answer:
                if answer.status == 200:
                    return Server("litellm", process, url, f"litellm {version(command)}")
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    exited = process.poll()
    stop(process)
    lines = (workdir / "litellm.log").read_text(errors="replace").strip().splitlines()
    how = f"exited with {exited}" if exited is not None else f"did not answer in {_START_TIMEOUT} s"
    raise Unavailable(f"its proxy {how} ({' '.join(lines[-2:])[:300] or 'no output'})")
