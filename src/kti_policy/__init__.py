"""kti-policy: a policy-as-code engine for personal-data rules.

Data flows one way: YAML files -> loaded and checked policy set (``loader``) -> compiled rules
(``compile``, run by ``engine``) -> decision (``decision``) -> HTTP (``app``/``api``) and CLI (``cli``).
"""

__version__ = "0.1.0"
