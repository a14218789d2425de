"""From an operation and a subject's facts to a decision: operation parsing,
compile to durable-rules, the engine (the only importer of durable-rules), the decision and its
obligations (deadlines from ``policy.calendar``).

May import: the root base modules, ``facts``, ``policy``.
"""
