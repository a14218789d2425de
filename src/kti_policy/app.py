"""The WSGI entry point at its old place: ``gunicorn "kti_policy.app:create_app()"``
(Dockerfile, gunicorn.conf.py) keeps working. The factory lives in ``kti_policy.api.app``.
"""

from kti_policy.api.app import create_app

__all__ = ["create_app"]
