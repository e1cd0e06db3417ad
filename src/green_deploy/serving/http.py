"""uvicorn's HTTP protocol, with one change: a request it cannot parse (a ``Content-Length`` that
is not a number, a broken request line) is answered with the serving core's JSON error, like
every other refusal, instead of uvicorn's plain-text 400."""

from __future__ import annotations

import json

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from green_deploy.serving.responses import error_body


class JsonErrorHttpToolsProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        body = json.dumps(error_body("malformed_http", f"the request is not valid HTTP/1.1: {msg}")).encode()
        content = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
