"""The command line (``kti-policy check/test/eval/serve/deliver/diff``): thin
commands over the library, impact analysis (``diff``), the development server (``serve``).

May import: everything below it.
"""
