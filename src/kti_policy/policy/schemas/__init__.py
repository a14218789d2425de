"""JSON Schemas (draft 2020-12) of the three YAML formats, for editors.

``policy.schema.json`` (a policy file), ``vocabulary.schema.json`` (``vocabulary.yaml``) and
``policy-test.schema.json`` (``policies/tests/*.yaml``). A file names its schema on a modeline such
as ``# yaml-language-server: $schema=../src/kti_policy/policy/schemas/policy.schema.json``, and the editor
then completes keys and ids and underlines mistakes as compliance staff type.

The schemas only help while typing: the loader (``kti-policy check``) stays the authority, and
checks what a schema cannot (vocabulary ids, unique rule ids). They use only keywords that draft-07
editors also understand (no ``unevaluatedProperties``, ``dependentRequired`` or ``prefixItems``):
YAML language servers before 2.0 validate with draft-07 semantics. ``tests/policy/test_schemas.py`` keeps
them in step with the loaders.
"""

from __future__ import annotations

from pathlib import Path

NAMES = ("policy", "vocabulary", "policy-test")

_HERE = Path(__file__).resolve().parent


def schema_path(name: str) -> Path:
    """The schema file for ``name``: "policy", "vocabulary" or "policy-test"."""
    if name not in NAMES:
        raise ValueError(f"unknown schema {name!r}; schemas: {', '.join(NAMES)}")
    return _HERE / f"{name}.schema.json"
