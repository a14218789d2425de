"""Policy tests (``policies/tests/*.yaml``): load cases, run them against a
policy set, JUnit and coverage. A package of its own, below ``store``, ``api`` and ``tools``,
because both the CLI (``kti-policy test``) and the playground (``api/ui.py``) run them, and the API
must not import the tools.

May import: the root base modules, ``facts``, ``policy``, ``decide``.
"""
