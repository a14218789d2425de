"""The policy language: YAML with source positions, the model (frozen dataclasses),
conditions and their reference evaluator, fields, periods and the Finnish calendar, the loader (every
error at once), lint, and the editors' JSON Schemas (``schemas/``). No IO beyond reading files.

``calendar`` lives here, not in ``decide`` as issue 16 proposed: ``durations`` (periods such as
``1 month``, part of the model) counts with it.

May import: the root base modules and ``facts``.
"""
