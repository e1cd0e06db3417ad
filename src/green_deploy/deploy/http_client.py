"""The HTTP client of the servers on this machine: one request to a server on loopback
(``http.client``: no dependency, no connection pool to keep), and the serving core's error body
made readable."""

from __future__ import annotations

import http.client
import json
from collections.abc import Mapping
from urllib.parse import urlsplit


def http_request(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    *,
    timeout_s: float,
) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout_s)
    try:
        connection.request(method, parts.path or "/", body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def error_text(payload: bytes) -> str:
    try:
        error = json.loads(payload)["error"]
        return f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return payload[:300].decode(errors="replace")


def post(
    name: str, url: str, body: bytes, headers: Mapping[str, str], *, timeout_s: float
) -> tuple[dict[str, str], bytes]:
    """POST ``body`` to the deployment ``name`` at ``url``; its headers and body, or a
    ``DeploymentError`` quoting the refusal when it does not answer 200."""
    from green_deploy.deploy.base import DeploymentError

    status, answer_headers, payload = http_request("POST", url, body, headers, timeout_s=timeout_s)
    if status != 200:
        raise DeploymentError(f"{name} refused the request ({status}): {error_text(payload)}")
    return answer_headers, payload
