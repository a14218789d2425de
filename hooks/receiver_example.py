"""A minimal webhook receiver for kti-policy (stdlib + standardwebhooks), for trying hooks/example.yaml.

    KTI_HOOK_SECRET_EXAMPLE=whsec_... python hooks/receiver_example.py     # listens on 127.0.0.1:9000

It verifies the Standard Webhooks signature over the raw body, answers 401 to a bad one, and dedupes
on ``webhook-id``: kti-policy delivers at least once, so the same event may arrive again after a
timeout or a crash; act on it once. A real receiver keeps the seen ids in its database for days (the
sender's retry horizon), in the same transaction as the effect.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SEEN: set[str] = set()
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    webhook: Webhook

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            self.webhook.verify(body, dict(self.headers.items()), json_parse=False)
        except (WebhookVerificationError, ValueError, TypeError) as exc:
            return self._answer(401, f"bad signature: {exc}")
        msg_id = self.headers["webhook-id"]
        with LOCK:
            if msg_id in SEEN:
                return self._answer(200, "duplicate, already handled")
            SEEN.add(msg_id)
        event = json.loads(body)
        data = event["data"]
        print(
            f"{event['type']} subject={data['subject_id']} occurred_at={data['occurred_at']} "
            f"id={msg_id}",
            flush=True,
        )
        self._answer(204, "")

    def _answer(self, status: int, text: str) -> None:
        payload = text.encode()
        self.send_response(status)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    secret = os.environ.get("KTI_HOOK_SECRET_EXAMPLE")
    if not secret:
        sys.exit("set KTI_HOOK_SECRET_EXAMPLE to the same whsec_... value as the service")
    Handler.webhook = Webhook(secret)
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    print(f"listening on http://127.0.0.1:{port}/kti", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
