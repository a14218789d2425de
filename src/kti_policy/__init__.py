"""kti-policy: a policy-as-code engine for personal-data rules.

Packages, bottom -> top, each importing only the root base modules (``errors``, ``config``) and the
packages below it: facts, policy, decide, verify, store, register, hooks, api, tools (docs/DESIGN.md draws them; tests/test_layering.py holds
them). ``client`` is the standalone caller library; ``app`` re-exports ``api.app.create_app``.
"""

__version__ = "0.1.0"
