"""A provider of your own, the made-up Acme API: ``ACME_API_KEY=... python
examples/custom_adapter.py``, then call ``http://127.0.0.1:8000/acme/chat/completions``.
``ACME_BASE_URL`` points the adapter at another upstream (a test server)."""

import argparse
import json
import os

import uvicorn

from provider_proxy import ProxyError, make_asgi_app
from provider_proxy.adapters import BaseAdapter
from provider_proxy.dialects import OpenAIChat


class AcmeChat(OpenAIChat):  # OpenAI's chat format, but the proxy's own errors are Acme's
    name = "acme-chat"

    def error_body(self, error: ProxyError, request_id: str) -> bytes:
        fault = {"code": error.kind, "message": error.message, "request": request_id}
        return json.dumps({"fault": fault}).encode()


class AcmeAdapter(BaseAdapter):
    default_name = "acme"  # served at {mount}/acme/...
    default_base_url = "https://api.acme.example/v2"
    default_api_key_env = "ACME_API_KEY"
    auth_header = "x-api-token"  # Acme wants the bare key in X-Api-Token
    auth_scheme = ""
    endpoints = ("POST /chat/completions", "GET /models")  # nothing else is forwarded
    dialects = (AcmeChat(),)  # the format of all of its paths


app = make_asgi_app([AcmeAdapter(base_url=os.environ.get("ACME_BASE_URL") or None)])

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Serve the proxy with the Acme provider.")
    parser.add_argument("--port", type=int, default=8000)
    uvicorn.run(app, host="127.0.0.1", port=parser.parse_args().port)
