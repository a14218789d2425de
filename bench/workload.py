"""A seeded workload of decision requests for the shipped policy pack (CONTRACT vocabulary).

``generate(n=20_000, seed=2026)`` returns ``n`` items ``(body, facts)``: a decision request body
exactly as ``POST /v1/decisions`` takes it, and the recorded ``SubjectFacts`` of its subject.

The mix: ~40% process, 30% disclose, 15% delete/retain, 15% collect. A fifth of the subjects have
objected (marketing, direct marketing or disclosure), a tenth have ended their relationship; some
requests carry special data categories, foreign recipients or consents. Passing the loaded
``Vocabulary`` keeps only ids it knows, so the workload also runs against a smaller folder.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

try:
    from kti_policy.facts.fold import SubjectFacts
    from kti_policy.policy.model import Vocabulary
except ImportError:  # the flat layout of older revisions (bench/ab_engine.sh)
    from kti_policy.model import Vocabulary  # type: ignore[no-redef]

    from kti_policy.facts import SubjectFacts  # type: ignore[no-redef]

PURPOSES = ["customer_relationship", "rights_and_obligations", "online_services", "research",
            "direct_marketing", "partner_marketing", "debt_collection", "product_development",
            "risk_management", "message_verification", "site_statistics"]
ORDINARY = ["name", "email", "mobile_phone", "company_and_position", "company_address",
            "call_recording", "message", "credit_information", "debt_information"]
SPECIAL = ["health", "ethnic_origin", "religion", "political_opinion", "trade_union_membership",
           "genetic", "biometric", "sex_life", "criminal_record"]
RECIPIENTS = ["authority", "third_party", "partner", "processor", "internal"]
SOURCES = ["customer_register", "asiakastieto", "client", "data_subject", "public_register",
           "credit_register", "purchased_list", "web_scraping"]
OBJECTIONS = ["direct_marketing", "marketing", "disclosure"]
CONSENTS = ["disclosure", "direct_marketing", "partner_marketing"]
LEGAL_BASES = ["legal_obligation", "consent", "contract", "legitimate_interest"]
COUNTRIES = ["FI"] * 8 + ["SE", "DE", "US"]  # about a quarter of recipients abroad
SUBJECTS = 2_000
AT = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def _known(vocab: Vocabulary | None, kind: str, ids: list[str]) -> list[str]:
    if vocab is None:
        return ids
    kept = [i for i in ids if vocab.knows(kind, i)]
    return kept or vocab.ids(kind)


def subject_facts(rng: random.Random, vocab: Vocabulary | None = None) -> SubjectFacts:
    """Recorded facts of one subject: 1/5 objected, 1/10 ended, some consents."""
    objections = frozenset(rng.sample(_known(vocab, "objection_scope", OBJECTIONS), rng.randint(1, 2))) \
        if rng.random() < 0.2 else frozenset()
    consents = frozenset(c for c in _known(vocab, "consent_purpose", CONSENTS) if rng.random() < 0.15)
    ended = rng.random() < 0.1
    return SubjectFacts(
        consents=consents,
        objections=objections,
        relationship="ended" if ended else "active",
        erasure_requested=ended and rng.random() < 0.3,
        access_requests=(AT - timedelta(days=rng.randint(30, 700)),) if rng.random() < 0.1 else (),
    )


def generate(n: int = 20_000, seed: int = 2026, vocab: Vocabulary | None = None) -> list[tuple[dict[str, Any], SubjectFacts]]:
    rng = random.Random(seed)
    purposes = _known(vocab, "purpose", PURPOSES)
    ordinary = _known(vocab, "data_category", ORDINARY)
    special = _known(vocab, "data_category", SPECIAL)
    recipients = _known(vocab, "recipient_type", RECIPIENTS)
    sources = _known(vocab, "source", SOURCES)
    consents = _known(vocab, "consent_purpose", CONSENTS)
    legal = _known(vocab, "legal_basis_type", LEGAL_BASES)
    facts = [subject_facts(rng, vocab) for _ in range(SUBJECTS)]

    def categories() -> list[str]:
        cats = rng.sample(ordinary, rng.randint(1, min(3, len(ordinary))))
        if rng.random() < 0.05:
            cats.append(rng.choice(special))
        return cats

    out: list[tuple[dict[str, Any], SubjectFacts]] = []
    for i in range(n):
        k = rng.randrange(SUBJECTS)
        subject: dict[str, Any] = {"id": f"cust-{k:05d}"}
        if rng.random() < 0.1:
            subject["consents"] = [rng.choice(consents)]
        at = (AT + timedelta(minutes=i)).isoformat()
        roll = rng.random()
        body: dict[str, Any]
        if roll < 0.40:
            body = {"operation": "process", "purpose": rng.choice(purposes), "data_categories": categories()}
        elif roll < 0.70:
            body = {"operation": "disclose", "data_categories": categories(),
                    "recipient": {"type": rng.choice(recipients), "country": rng.choice(COUNTRIES)}}
            if rng.random() < 0.6:
                body["legal_basis"] = {"type": rng.choice(legal)}
            if rng.random() < 0.3:
                body["purpose"] = rng.choice(purposes)
        elif roll < 0.85:
            body = {"operation": rng.choice(["delete", "retain"]), "data_categories": categories()}
        else:
            body = {"operation": "collect", "source": rng.choice(sources), "data_categories": categories()}
            if rng.random() < 0.5:
                body["purpose"] = rng.choice(purposes)
        body["subject"] = subject
        body["at"] = at
        out.append((body, facts[k]))
    return out
