"""The Flask service: the app factory (``app``), blueprints, API keys and roles,
OpenAPI, metrics, the decision log, the policy holder, log redaction, and the playground.
The root module ``app`` re-exports ``create_app`` for ``gunicorn 'kti_policy.app:create_app()'``.

May import: the root base modules and every package up to ``hooks``.
"""
