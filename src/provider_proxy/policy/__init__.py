"""Pure policy: paths, headers, query strings and endpoint rules; no I/O."""

from ._endpoints import EndpointRule, endpoint_allowed, parse_rule, parse_rules
from ._headers import (
    DEFAULT_POLICY,
    REQUEST_ID,
    UPSTREAM_REQUEST_ID,
    HeaderPolicy,
    RawHeaders,
    apply_headers,
    header_value,
    httpx_headers,
    request_headers_for_upstream,
    request_id_from,
    response_headers_for_client,
    upstream_limits_renamed,
)
from ._paths import confine, path_below_mount, split_provider, upstream_url
from ._query import param_value, query_without, with_default_param, without_params

__all__ = [
    "DEFAULT_POLICY",
    "REQUEST_ID",
    "UPSTREAM_REQUEST_ID",
    "EndpointRule",
    "HeaderPolicy",
    "RawHeaders",
    "apply_headers",
    "confine",
    "endpoint_allowed",
    "header_value",
    "httpx_headers",
    "param_value",
    "parse_rule",
    "parse_rules",
    "path_below_mount",
    "query_without",
    "request_headers_for_upstream",
    "request_id_from",
    "response_headers_for_client",
    "split_provider",
    "upstream_limits_renamed",
    "upstream_url",
    "with_default_param",
    "without_params",
]
