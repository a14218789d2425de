"""``kti-policy serve``: the service for development, with webhook delivery in the background.

One process (Flask's threaded development server); production runs
``gunicorn -c gunicorn.conf.py 'kti_policy.app:create_app()'`` plus ``kti-policy deliver``.
Without ``KTI_API_KEYS`` it binds only to loopback and says so.
"""

from __future__ import annotations

import logging
import os

import click

log = logging.getLogger(__name__)


def _request_handler_base() -> type:
    from werkzeug.serving import WSGIRequestHandler

    return WSGIRequestHandler


class _RedactingRequestHandler(_request_handler_base()):  # type: ignore[misc]
    """werkzeug's request log line, with the route the app matched (``kti.log_target``, see
    ``app.log_target``) in place of the raw path, which may hold a clear subject id."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        environ = getattr(self, "environ", None) or {}
        self.path = environ.get("kti.log_target") or "<unmatched>"
        super().log_request(code, size)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--no-delivery", is_flag=True, help="Do not deliver webhooks from this process."
)
def serve_command(host: str, port: int, no_delivery: bool) -> None:
    """Run the decision service (development server) with background webhook delivery."""
    from kti_policy.config import check_auth_for_binds, load_config
    from kti_policy.errors import KtiError

    logging.basicConfig(
        level=os.environ.get("KTI_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from kti_policy.api.redact import install

    install("werkzeug")  # its request log would print GET /v1/subjects/<clear id>
    config = load_config(None)
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        for warning in check_auth_for_binds([bind], config.get("KTI_API_KEYS")):
            click.echo(f"warning: {warning}", err=True)
        from kti_policy.api.app import create_app

        app = create_app(config)
    except KtiError as exc:
        raise click.ClickException(str(exc)) from None

    worker = thread = None
    if not no_delivery:
        from kti_policy.hooks.delivery import Worker

        try:
            worker = Worker.from_config(app.extensions["kti"].store, config)
        except KtiError as exc:  # a bad KTI_HOOK_* setting: the message names it, no traceback
            app.extensions["kti"].close()
            raise click.ClickException(str(exc)) from None
        thread = worker.start_background()
        click.echo("webhook delivery runs in the background", err=True)
    click.echo(f"kti-policy serving on http://{bind}", err=True)
    try:
        app.run(
            host=host, port=port, threaded=True, use_reloader=False, debug=False,
            request_handler=_RedactingRequestHandler,
        )
    finally:
        if worker is not None and thread is not None:
            worker.stop()  # the attempts under way end, deliveries in hand are given back
            thread.join(timeout=worker.timeout + 5)
        app.extensions["kti"].close()
