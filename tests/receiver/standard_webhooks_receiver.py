"""A webhook receiver for the integration tests that checks paywarden's deliveries with the
official Standard Webhooks library (the `standardwebhooks` package from PyPI), not with
paywarden's own code.

Started by a test (`tests/api/standard_webhooks.rs`), it prints `port <n>` once it listens on
127.0.0.1, then:

- `POST /hook/<status>[?fail_first=<n>]`: records the request (headers and raw body) and
  answers `<status>` (the first `n` requests of that path and query answer 500, or
  `fail_status`, with `Retry-After: <retry_after>` when that is 429 or 503), with the body
  `{"answered": <status>}`.
- `GET /_control/requests`: every recorded request, in arrival order.
- `POST /_control/verify {"secret"}`: each recorded request checked with
  `Webhook(secret).verify(body, headers)`, and the same request checked again as if it were
  replayed six minutes later (the library must refuse its timestamp).

It ends when its standard input closes (the test that started it is gone).
"""

import json
import sys
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import standardwebhooks.webhooks as library
from standardwebhooks.webhooks import Webhook

LOCK = threading.Lock()
REQUESTS = []
SEEN_PER_TARGET = {}


class _SixMinutesLater(datetime):
    """The library's clock, moved forward: a captured request replayed later."""

    @classmethod
    def now(cls, tz=None):
        return datetime.now(tz) + timedelta(minutes=6)


def verify(secret, request):
    body = request["body"].encode()
    headers = request["headers"]
    result = {"webhook_id": headers.get("webhook-id"), "ok": False, "error": None}
    try:
        Webhook(secret).verify(body, headers)
        result["ok"] = True
    except Exception as err:  # the library's verification error, or a bad secret
        result["error"] = f"{type(err).__name__}: {err}"
    # The library reads `datetime.now` from its module: swapped while one check runs.
    original = library.datetime
    library.datetime = _SixMinutesLater
    try:
        Webhook(secret).verify(body, headers)
        result["replay_refused"] = False
    except Exception as err:
        result["replay_refused"] = "too old" in str(err)
    finally:
        library.datetime = original
    return result


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _answer(self, status, payload=None, headers=None):
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length)

    def do_GET(self):
        if self.path == "/_control/requests":
            with LOCK:
                self._answer(200, REQUESTS)
        else:
            self._answer(404)

    def do_POST(self):
        body = self._body()
        if self.path == "/_control/verify":
            secret = json.loads(body)["secret"]
            with LOCK:
                results = [verify(secret, request) for request in REQUESTS]
            self._answer(200, results)
            return
        parts = urlsplit(self.path)
        segments = parts.path.strip("/").split("/")
        if len(segments) != 2 or segments[0] != "hook" or not segments[1].isdigit():
            self._answer(404)
            return
        status = int(segments[1])
        query = parse_qs(parts.query)
        fail_first = int(query.get("fail_first", ["0"])[0])
        fail_status = int(query.get("fail_status", ["500"])[0])
        retry_after = query.get("retry_after", [None])[0]
        with LOCK:
            seen = SEEN_PER_TARGET.get(self.path, 0)
            SEEN_PER_TARGET[self.path] = seen + 1
            answered = fail_status if seen < fail_first else status
            REQUESTS.append(
                {
                    "path": self.path,
                    "received_at": datetime.now(timezone.utc).timestamp(),
                    "headers": {name.lower(): value for name, value in self.headers.items()},
                    "body": body.decode(),
                    "answered": answered,
                }
            )
        extra = {"retry-after": retry_after} if retry_after and answered in (429, 503) else {}
        self._answer(answered, {"answered": answered}, extra)


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"port {server.server_address[1]}", flush=True)
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
