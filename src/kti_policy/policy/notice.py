"""The privacy notice (GDPR 13 and 14) written from a loaded policy set: ``PolicySet -> text``.

What the notice says comes from the pack, so the published notice and the enforced rules cannot
drift: the purposes are those the ``process`` permits name (and their legal bases the ``notice:``
section of ``vocabulary.yaml``), the data categories the vocabulary's (special ones listed as not
processed, with the law of the rule that forbids them), the sources those ``collect`` permits and
forbids name, the recipients the ``disclose`` rules, the transfers the EEA and adequacy lists with
their checked dates, the retention periods the named periods, the deadlines the ``subject_request``
rules' obligations, the cookies the ``store_cookie`` rules. Only the frame (headings, connecting
sentences, the Data Protection Ombudsman's contact) is fixed here.

Nothing here does IO. ``render(policy_set, lang, fmt)`` gives Markdown (``md``) or a complete HTML
page (``html``, every pack text escaped with ``html.escape``, a small inline stylesheet).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .durations import Period
from .model import All, AnyOf, Condition, Contains, Eq, In, Not, PolicySet, Rule, Text

FORMATS = ("md", "html")

# --- the frame: fixed wording in both languages ------------------------------------------------

_F: dict[str, Text] = {
    "title": Text("Tietosuojaseloste", "Privacy notice"),
    "intro": Text(
        "Tässä selosteessa kerrotaan, miten {controller} käsittelee henkilötietoja (EU:n yleinen "
        "tietosuoja-asetus 2016/679, 13 ja 14 artikla, ja tietosuojalaki 1050/2018). Seloste on tuotettu "
        "samoista säännöistä, joilla KTI:n järjestelmät päättävät henkilötietojen käsittelystä "
        "(sääntöversio {version}).",
        "This notice tells how {controller} processes personal data (EU General Data Protection "
        "Regulation 2016/679, Articles 13 and 14, and the Data Protection Act 1050/2018). It is generated "
        "from the same rules that KTI's systems use to decide on processing personal data (policy "
        "version {version}).",
    ),
    "h_controller": Text("Rekisterinpitäjä ja yhteystiedot", "Controller and contact details"),
    "controller": Text("Rekisterinpitäjä", "Controller"),
    "register": Text("Rekisteri", "Register"),
    "address": Text("Postiosoite", "Postal address"),
    "email": Text("Sähköposti", "E-mail"),
    "dpo": Text("Tietosuojavastaava", "Data protection officer"),
    "no_dpo": Text(
        "Tietosuojaa koskevissa asioissa voit ottaa yhteyttä yllä oleviin osoitteisiin.",
        "For data protection matters, contact us at the addresses above.",
    ),
    "h_purposes": Text("Käsittelyn tarkoitukset ja oikeusperusteet", "Purposes of processing and legal bases"),
    "purposes_intro": Text(
        "Henkilötietoja käsitellään vain seuraaviin tarkoituksiin:",
        "Personal data is processed only for the following purposes:",
    ),
    "purpose": Text("Tarkoitus", "Purpose"),
    "basis": Text("Oikeusperuste", "Legal basis"),
    "not_stated": Text("ei ilmoitettu", "not stated"),
    "purposes_law": Text("Säännökset: {law}.", "Provisions: {law}."),
    "marketing": Text(
        "Markkinointi ({purposes}): voit kieltää tietojesi käytön markkinointiin milloin tahansa, ja "
        "kielto on ehdoton. Sähköistä suoramarkkinointia kuluttajalle lähetetään vain suostumuksella "
        "tai voimassa olevan asiakassuhteen perusteella; yhteistyökumppaneiden mainontaa sähköisesti "
        "vain suostumuksella. Luotto- ja saatavatietoja ei käytetä markkinointiin.",
        "Marketing ({purposes}): you may object to the use of your data for marketing at any time, and "
        "the objection is absolute. Electronic direct marketing to a consumer is sent only with consent "
        "or within an active customer relationship; partners' advertising electronically only with "
        "consent. Credit and debt information is never used for marketing.",
    ),
    "h_categories": Text("Käsiteltävät henkilötiedot", "Personal data processed"),
    "categories_intro": Text("Rekisteri voi sisältää seuraavia tietoja:", "The register may hold the following data:"),
    "special": Text(
        "Erityisiä henkilötietoryhmiä tai rikostietoja ei käsitellä ({law}); jos niitä on tullut, ne poistetaan: {items}.",
        "Special categories of personal data and criminal records are not processed ({law}); any that "
        "arrive are deleted: {items}.",
    ),
    "h_sources": Text("Mistä tiedot saadaan", "Where the data comes from"),
    "sources_intro": Text("Tiedot saadaan seuraavista lähteistä:", "The data comes from these sources:"),
    "sources_refused": Text("Tietoja ei hankita näistä lähteistä: {items}.", "Data is never obtained from: {items}."),
    "source_only": Text("vain tarkoituksiin: {items}", "only for: {items}"),
    "h_recipients": Text("Tietojen vastaanottajat ja siirrot", "Recipients and transfers"),
    "recipients_intro": Text(
        "Tietoja luovutetaan vain seuraavasti; muuten niitä ei luovuteta ulkopuolisille.",
        "Data is disclosed only as follows; otherwise it is not disclosed to outside parties.",
    ),
    "recipient": Text("Vastaanottaja", "Recipient"),
    "when": Text("Milloin", "When"),
    "law": Text("Säännökset", "Provisions"),
    "consent_only": Text("Vain suostumuksellasi.", "Only with your consent."),
    "never": Text("Ei koskaan.", "Never."),
    "objection_disclosure": Text(
        "Voit kieltää tietojesi luovuttamisen; kielto kumoaa aiemman suostumuksen.",
        "You may object to the disclosure of your data; an objection overrides an earlier consent.",
    ),
    "transfers": Text(
        "Tietoja siirretään Euroopan talousalueen ulkopuolelle vain maahan, jolla on Euroopan komission "
        "tietosuojan riittävyyspäätös, tai seuraavin suojatoimin: {safeguards} ({law}). Näin on, vaikka "
        "suostumus tai sopimus olisi olemassa.",
        "Data is transferred outside the European Economic Area only to a country with a European "
        "Commission adequacy decision, or with these safeguards: {safeguards} ({law}). This holds "
        "whatever consent or agreement exists.",
    ),
    "us_dpf": Text(
        "Yhdysvaltoihin vain EU:n ja Yhdysvaltojen tietosuojakehykseen sertifioidulle organisaatiolle (tai muiden suojatoimien turvin).",
        "To the United States only to organisations certified under the EU-US Data Privacy Framework (or with other safeguards).",
    ),
    "list_checked": Text("{label}: {values} (tarkistettu {checked}).", "{label}: {values} (checked {checked})."),
    "h_retention": Text("Säilytysajat", "Retention periods"),
    "retention_intro": Text(
        "Tietoja säilytetään asiakassuhteen ajan ja sen jälkeen vain näin:",
        "Data is kept during the customer relationship, and after it only as follows:",
    ),
    "period": Text("Aika", "Period"),
    "what": Text("Mitä", "What"),
    "legal_claims": Text(
        "Saatavan perintää ja siihen liittyvien oikeuksien hoitamista voidaan jatkaa poistopyynnöstä tai asiakassuhteen päättymisestä huolimatta ({law}).",
        "Collecting a debt and handling the rights attached to it may continue despite an erasure request or the end of the customer relationship ({law}).",
    ),
    "h_rights": Text("Oikeutesi ja niiden käyttäminen", "Your rights and how to use them"),
    "rights_intro": Text(
        "Voit tehdä seuraavat pyynnöt missä muodossa tahansa: kirjeellä osoitteeseen {address}, "
        "sähköpostilla osoitteeseen {email} tai puhelimitse. Allekirjoitusta tai tiettyä lomaketta ei tarvita.",
        "You may make the following requests in any form: by letter to {address}, by e-mail to {email} "
        "or by phone. No signature or particular form is needed.",
    ),
    "request": Text("Pyyntö", "Request"),
    "deadline": Text("Vastaus viimeistään", "Answered within"),
    "identity": Text(
        "Varmistamme henkilöllisyytesi ennen kuin annamme tai muutamme tietoja ({law}).",
        "We verify your identity before giving out or changing any data ({law}).",
    ),
    "fee": Text(
        "Ensimmäinen kopio tiedoistasi on aina maksuton; maksu voidaan periä vain lisäkopioista tai "
        "ilmeisen perusteettomasta tai kohtuuttomasta pyynnöstä ({law}).",
        "The first copy of your data is always free; a fee may be charged only for further copies or "
        "for a manifestly unfounded or excessive request ({law}).",
    ),
    "notify": Text(
        "Korjauksesta, täydennyksestä, poistosta tai käsittelyn rajoittamisesta ilmoitetaan jokaiselle, jolle tietoja on luovutettu ({law}).",
        "Everyone the data was disclosed to is told of a rectification, completion, erasure or restriction ({law}).",
    ),
    "withdraw": Text(
        "Voit peruuttaa suostumuksesi milloin tahansa; peruutus ei vaikuta sitä ennen tehtyyn käsittelyyn. Suostumukset: {items}.",
        "You may withdraw a consent at any time; the withdrawal does not affect processing before it. Consents: {items}.",
    ),
    "objections": Text("Voit kieltää: {items}.", "You may object to: {items}."),
    "h_deadlines": Text("Määräajat", "Deadlines"),
    "extended": Text(
        "Jos pyyntö on monimutkainen tai pyyntöjä on useita, vastausaikaa voidaan pidentää; vastaamme "
        "silloin viimeistään {respond} pyynnön saapumisesta ja kerromme pidennyksestä ja sen syistä "
        "{notice} kuluessa ({law}).",
        "If a request is complex or there are many, the answer may take longer: we then answer within "
        "{respond} of receipt and tell you of the extension and why within {notice} ({law}).",
    ),
    "business_day": Text(
        "Määräajat lasketaan Suomen aikaa; jos määräaika päättyy lauantaina, sunnuntaina tai "
        "arkipyhänä (myös jouluaatto ja juhannusaatto), se siirtyy seuraavaan arkipäivään.",
        "Deadlines are counted in Finnish time; a deadline that falls on a Saturday, Sunday or public "
        "holiday (Christmas Eve and Midsummer Eve included) moves to the next business day.",
    ),
    "h_cookies": Text("Evästeet", "Cookies"),
    "cookie": Text("Eväste", "Cookie"),
    "cookie_rule": Text("Tallennetaan", "Stored"),
    "cookie_free": Text("ilman suostumusta (sivusto ei toimi ilman niitä)", "without consent (the site does not work without them)"),
    "cookie_consent": Text("vain etukäteen antamallasi suostumuksella", "only with your prior consent"),
    "cookie_never": Text("ei tallenneta", "not stored"),
    "cookies_no_data": Text(
        "Evästeisiin ei tallenneta henkilötietoja. Selaimen asetukset tai sivustolla pysyminen eivät ole suostumus.",
        "Cookies hold no personal data. Browser settings or staying on the site are not consent.",
    ),
    "h_complaint": Text("Oikeus valittaa valvontaviranomaiselle", "Right to lodge a complaint"),
    "complaint": Text(
        "Jos katsot, että henkilötietojesi käsittely rikkoo tietosuojalainsäädäntöä, voit tehdä "
        "valituksen tietosuojavaltuutetulle (Tietosuojavaltuutetun toimisto, PL 800, 00531 Helsinki, "
        "tietosuoja@om.fi, {url}) tai asuin- tai työskentelymaasi valvontaviranomaiselle (GDPR 77).",
        "If you consider that the processing of your personal data infringes data protection law, you "
        "may lodge a complaint with the Data Protection Ombudsman (tietosuojavaltuutettu; Office of the "
        "Data Protection Ombudsman, PO Box 800, 00531 Helsinki, Finland, tietosuoja@om.fi, {url}) or "
        "with the supervisory authority of the country where you live or work (GDPR 77).",
    ),
    "h_laws": Text("Säädökset", "Legislation"),
    "footer": Text(
        "Tuotettu sääntöversiosta {version}{updated}. Julkaistu seloste ja sovelletut säännöt ovat samasta lähteestä.",
        "Generated from policy version {version}{updated}. The published notice and the rules applied come from one source.",
    ),
    "updated": Text(", yhteystiedot tarkistettu {date}", ", contact details reviewed {date}"),
}
OMBUDSMAN_URL = "https://tietosuoja.fi"


def _t(key: str, lang: str, **values: Any) -> str:
    text = _F[key].get(lang)
    for k, v in values.items():
        text = text.replace("{" + k + "}", str(v))
    return text


# --- the document: a small tree both renderers walk --------------------------------------------


@dataclass
class Para:
    text: str
    note: bool = False


@dataclass
class Items:
    items: list[str]


@dataclass
class Table:
    head: list[str]
    rows: list[list[str]]


@dataclass
class Links:
    links: list[tuple[str, str, str]]  # (label, title, url)


@dataclass
class Section:
    title: str
    blocks: list[Para | Items | Table | Links] = field(default_factory=list)


@dataclass
class Document:
    lang: str
    title: str
    subtitle: str
    intro: str
    sections: list[Section]
    footer: str


# --- reading the rules -------------------------------------------------------------------------


def _conjuncts(cond: Condition | None) -> list[Condition]:
    """The top-level ``all`` parts of a condition (the condition itself when it is not an ``all``)."""
    if cond is None:
        return []
    if isinstance(cond, All):
        return [c for item in cond.items for c in _conjuncts(item)]
    return [cond]


def _values(cond: Condition, path: str) -> tuple[Any, ...] | None:
    """The values a top-level leaf on ``path`` allows (``None``: the rule does not name ``path``)."""
    for c in _conjuncts(cond):
        if isinstance(c, Eq) and c.path == path:
            return (c.value,)
        if isinstance(c, In) and c.path == path:
            return c.values
    return None


def _mentions(cond: Condition | None, path: str, value: Any) -> bool:
    """Whether ``path`` equals (or may be) ``value`` anywhere in ``cond`` outside a ``not``."""
    if cond is None or isinstance(cond, Not):
        return False
    if isinstance(cond, Eq):
        return cond.path == path and cond.value == value
    if isinstance(cond, In):
        return cond.path == path and value in cond.values
    if isinstance(cond, (All, AnyOf)):
        return any(_mentions(c, path, value) for c in cond.items)
    return False


def _names_path(cond: Condition | None, path: str) -> bool:
    if cond is None:
        return False
    if isinstance(cond, (Eq, In, Contains)):
        return cond.path == path
    if isinstance(cond, (All, AnyOf)):
        return any(_names_path(c, path) for c in cond.items)
    if isinstance(cond, Not):
        return _names_path(cond.item, path)
    return getattr(cond, "path", None) == path


def _rules(ps: PolicySet, effect: str, operation: str) -> list[Rule]:
    out = []
    for r in ps.rules:
        ops = _values(r.when, "operation")
        if r.effect == effect and ops is not None and operation in ops:
            out.append(r)
    return out


def _laws(rules: Iterable[Rule]) -> list[str]:
    return list(dict.fromkeys(c for r in rules for c in r.law))


def _law_text(rules: Iterable[Rule]) -> str:
    return ", ".join(_laws(rules)) or "—"


def _period_text(p: Period, lang: str) -> str:
    return p.text(lang)


def _within(spec_within: Any, lang: str) -> str:
    unit, amount = spec_within
    return Period(int(amount), str(unit)).text(lang)


# --- building the document ---------------------------------------------------------------------


def build(ps: PolicySet, lang: str = "en") -> Document:
    """The notice as a document tree, every text from the pack or the fixed frame above."""
    v = ps.vocabulary
    info = v.notice
    controller = info.controller if info else "—"
    label = lambda kind, vid: v.label(kind, vid, lang)  # noqa: E731
    sections = [
        _controller(ps, lang),
        _purposes(ps, lang, label),
        _categories(ps, lang, label),
        _sources(ps, lang, label),
        _recipients(ps, lang, label),
        _retention(ps, lang),
        _rights(ps, lang, label),
        _deadlines(ps, lang, label),
        _cookies(ps, lang, label),
        Section(_t("h_complaint", lang), [Para(_t("complaint", lang, url=OMBUDSMAN_URL))]),
        Section(_t("h_laws", lang), [Links([(lid, law.title.get(lang), law.url) for lid, law in v.laws.items()])]),
    ]
    updated = _t("updated", lang, date=info.updated) if info and info.updated else ""
    return Document(
        lang=lang,
        title=_t("title", lang),
        subtitle=f"{controller}" + (f" · {info.register.get(lang)}" if info and info.register else ""),
        intro=_t("intro", lang, controller=controller, version=ps.version),
        sections=[s for s in sections if s.blocks],
        footer=_t("footer", lang, version=ps.version, updated=updated),
    )


def _controller(ps: PolicySet, lang: str) -> Section:
    info = ps.vocabulary.notice
    s = Section(_t("h_controller", lang))
    if info is None:
        return s
    rows = [[_t("controller", lang), info.controller]]
    if info.register:
        rows.append([_t("register", lang), info.register.get(lang)])
    rows += [[_t("address", lang), info.address], [_t("email", lang), info.email]]
    if info.dpo:
        rows.append([_t("dpo", lang), info.dpo])
    s.blocks.append(Table([], rows))
    if not info.dpo:
        s.blocks.append(Para(_t("no_dpo", lang)))
    return s


def permitted_purposes(ps: PolicySet) -> tuple[list[str], list[Rule]]:
    """The purposes a ``process`` permit names (in vocabulary order), and those permits."""
    rules = [r for r in _rules(ps, "permit", "process") if _values(r.when, "purpose") is not None]
    named = {p for r in rules for p in (_values(r.when, "purpose") or ())}
    return [p for p in ps.vocabulary.ids("purpose") if p in named], rules


def _purposes(ps: PolicySet, lang: str, label: Any) -> Section:
    s = Section(_t("h_purposes", lang))
    purposes, rules = permitted_purposes(ps)
    if not purposes:
        return s
    bases = ps.vocabulary.notice.bases if ps.vocabulary.notice else {}
    s.blocks.append(Para(_t("purposes_intro", lang)))
    rows = []
    for p in purposes:
        b = bases.get(p)
        rows.append([label("purpose", p), ", ".join(label("legal_basis_type", x) for x in b) if b else _t("not_stated", lang)])
    s.blocks.append(Table([_t("purpose", lang), _t("basis", lang)], rows))
    # the rule that opens the most purposes (the register's) cites first
    ordered = sorted(rules, key=lambda r: -len(_values(r.when, "purpose") or ()))
    s.blocks.append(Para(_t("purposes_law", lang, law=_law_text(ordered)), note=True))
    marketing = ps.vocabulary.lists.get("marketing_purposes")
    if marketing is not None:
        s.blocks.append(Para(_t("marketing", lang, purposes=", ".join(label("purpose", p) for p in marketing.values))))
    return s


def _categories(ps: PolicySet, lang: str, label: Any) -> Section:
    s = Section(_t("h_categories", lang))
    entries = ps.vocabulary.kinds.get("data_category", {})
    ordinary = [e for e in entries.values() if not e.special]
    special = [e for e in entries.values() if e.special]
    if ordinary:
        s.blocks.append(Para(_t("categories_intro", lang)))
        s.blocks.append(Items([e.label.get(lang) + (f": {e.description.get(lang)}" if e.description else "") for e in ordinary]))
    if special:
        forbids = [r for r in ps.rules if r.effect == "forbid" and any(_names_path(r.when, "data_categories") and _mentions_category(r.when, e.id) for e in special)]
        s.blocks.append(Para(_t("special", lang, law=_law_text(forbids), items=", ".join(e.label.get(lang) for e in special))))
    return s


def _mentions_category(cond: Condition | None, category: str) -> bool:
    from .model import ContainsAny

    if cond is None:
        return False
    if isinstance(cond, ContainsAny):
        return cond.path == "data_categories" and category in cond.values
    if isinstance(cond, Contains):
        return cond.path == "data_categories" and cond.value == category
    if isinstance(cond, (All, AnyOf)):
        return any(_mentions_category(c, category) for c in cond.items)
    return False


def permitted_sources(ps: PolicySet) -> tuple[list[str], list[str]]:
    """The sources a ``collect`` permit names, and the other sources of the vocabulary (refused)."""
    named = {x for r in _rules(ps, "permit", "collect") for x in (_values(r.when, "source") or ())}
    ids = ps.vocabulary.ids("source")
    return [x for x in ids if x in named], [x for x in ids if x not in named]


def _sources(ps: PolicySet, lang: str, label: Any) -> Section:
    s = Section(_t("h_sources", lang))
    permitted, refused = permitted_sources(ps)
    forbids = _rules(ps, "forbid", "collect")
    items = []
    for src in permitted:
        limits = []
        for r in forbids:  # "collect from X unless purpose in [...]": X only for those purposes
            if _values(r.when, "source") == (src,) and r.unless is not None:
                allowed = _values(r.unless, "purpose")
                if allowed:
                    limits.append(_t("source_only", lang, items=", ".join(label("purpose", p) for p in allowed)))
        items.append(label("source", src) + (f" ({'; '.join(limits)})" if limits else ""))
    if items:
        s.blocks += [Para(_t("sources_intro", lang)), Items(items)]
    if refused:
        s.blocks.append(Para(_t("sources_refused", lang, items=", ".join(label("source", x) for x in refused))))
    return s


def _recipients(ps: PolicySet, lang: str, label: Any) -> Section:
    s = Section(_t("h_recipients", lang))
    permits = _rules(ps, "permit", "disclose")
    types = ps.vocabulary.ids("recipient_type")
    if not types:
        return s
    consent_permit = [r for r in permits if not _names_path(r.when, "recipient.type") and _mentions_contains(r.when, "subject.consents")]
    rows = []
    for rt in types:
        explicit = [r for r in permits if _mentions(r.when, "recipient.type", rt)]
        if explicit:
            rows.append([label("recipient_type", rt), " ".join(r.reason.get(lang) for r in explicit), _law_text(explicit)])
        elif consent_permit:
            rows.append([label("recipient_type", rt), _t("consent_only", lang), _law_text(consent_permit)])
        else:
            rows.append([label("recipient_type", rt), _t("never", lang), "—"])
    s.blocks += [Para(_t("recipients_intro", lang)), Table([_t("recipient", lang), _t("when", lang), _t("law", lang)], rows)]
    if any(_mentions_contains(r.when, "subject.objections") for r in _rules(ps, "forbid", "disclose")):
        s.blocks.append(Para(_t("objection_disclosure", lang)))
    transfer = [r for r in _rules(ps, "forbid", "disclose") if _uses_list(r.when, "eea_countries")]
    safeguards = ps.vocabulary.ids("transfer_safeguard")
    if transfer:
        s.blocks.append(Para(_t("transfers", lang, safeguards=", ".join(label("transfer_safeguard", x) for x in safeguards) or "—", law=_law_text(transfer))))
        if "dpf" in safeguards:
            s.blocks.append(Para(_t("us_dpf", lang)))
    for name in ("eea_countries", "adequacy_countries"):
        lst = ps.vocabulary.lists.get(name)
        if lst is not None:
            s.blocks.append(Para(_t("list_checked", lang, label=lst.label.get(lang), values=", ".join(lst.values), checked=lst.checked or "—"), note=True))
    return s


def _mentions_contains(cond: Condition | None, path: str) -> bool:
    if cond is None or isinstance(cond, Not):
        return False
    if isinstance(cond, Contains):
        return cond.path == path
    if isinstance(cond, (All, AnyOf)):
        return any(_mentions_contains(c, path) for c in cond.items)
    return getattr(cond, "path", None) == path and not isinstance(cond, Eq)


def _uses_list(cond: Condition | None, name: str) -> bool:
    if cond is None:
        return False
    if isinstance(cond, In):
        return cond.list_name == name
    if isinstance(cond, (All, AnyOf)):
        return any(_uses_list(c, name) for c in cond.items)
    if isinstance(cond, Not):
        return _uses_list(cond.item, name)
    return False


def _retention(ps: PolicySet, lang: str) -> Section:
    s = Section(_t("h_retention", lang))
    periods = ps.vocabulary.periods
    if periods:
        s.blocks.append(Para(_t("retention_intro", lang)))
        s.blocks.append(Table([_t("what", lang), _t("period", lang), _t("law", lang)],
                              [[p.label.get(lang), _period_text(p.period, lang), ", ".join(p.law) or "—"] for p in periods.values()]))
    claims = [r for r in ps.rules if r.effect == "permit" and _mentions(r.when, "legal_basis.type", "legal_claims")
              and _mentions(r.when, "purpose", "debt_collection")]
    if claims:
        s.blocks.append(Para(_t("legal_claims", lang, law=_law_text(claims))))
    return s


def _request_rules(ps: PolicySet, rtype: str) -> list[Rule]:
    return [r for r in _rules(ps, "permit", "subject_request") if _mentions(r.when, "request.type", rtype)]


def _obligation_rules(ps: PolicySet, otype: str) -> list[Rule]:
    return [r for r in ps.rules if any(o.type == otype for o in r.obligations)]


def _rights(ps: PolicySet, lang: str, label: Any) -> Section:
    s = Section(_t("h_rights", lang))
    v = ps.vocabulary
    info = v.notice
    types = [x for x in v.ids("request_type") if _request_rules(ps, x)]
    if not types:
        return s
    s.blocks.append(Para(_t("rights_intro", lang, address=info.address if info else "—", email=info.email if info else "—")))
    s.blocks.append(Items([label("request_type", x) for x in types]))
    for otype, key in (("verify_identity", "identity"), ("access_fee", "fee"), ("notify_recipients", "notify")):
        rules = _obligation_rules(ps, otype)
        if rules:
            s.blocks.append(Para(_t(key, lang, law=_law_text(rules))))
    if v.ids("objection_scope"):
        s.blocks.append(Para(_t("objections", lang, items=", ".join(label("objection_scope", x) for x in v.ids("objection_scope")))))
    if v.ids("consent_purpose"):
        s.blocks.append(Para(_t("withdraw", lang, items=", ".join(label("consent_purpose", x) for x in v.ids("consent_purpose")))))
    return s


def _deadlines(ps: PolicySet, lang: str, label: Any) -> Section:
    s = Section(_t("h_deadlines", lang))
    rows: dict[str, list[str]] = {}  # deadline text -> request types
    extended: list[Rule] = []
    for r in _rules(ps, "permit", "subject_request"):
        respond = [o for o in r.obligations if o.type == "respond_by"]
        if not respond:
            continue
        if _mentions(r.when, "request.extended", True):
            extended.append(r)
            continue
        types = _values(r.when, "request.type") or ()
        rows.setdefault(_within(respond[0].param("within"), lang), []).extend(types)
    if rows:
        s.blocks.append(Table([_t("request", lang), _t("deadline", lang)],
                              [[", ".join(label("request_type", x) for x in types), when] for when, types in rows.items()]))
    for r in extended:
        longer = next(o for o in r.obligations if o.type == "respond_by")
        note = next((o for o in r.obligations if o.type == "extension_notice_by"), None)
        s.blocks.append(Para(_t("extended", lang, respond=_within(longer.param("within"), lang),
                                notice=_within(note.param("within"), lang) if note else "—", law=_law_text([r]))))
    if s.blocks:
        s.blocks.append(Para(_t("business_day", lang), note=True))
    return s


def _cookies(ps: PolicySet, lang: str, label: Any) -> Section:
    s = Section(_t("h_cookies", lang))
    kinds = ps.vocabulary.ids("cookie_kind")
    if not kinds:
        return s
    permits = _rules(ps, "permit", "store_cookie")
    rows = []
    for k in kinds:
        rules = [r for r in permits if _mentions(r.when, "cookie.kind", k)]
        free = [r for r in rules if _values(r.when, "cookie.kind") == (k,) and not _mentions_contains(r.when, "subject.consents")]
        if free:
            rows.append([label("cookie_kind", k), _t("cookie_free", lang), _law_text(free)])
        elif rules:
            rows.append([label("cookie_kind", k), _t("cookie_consent", lang), _law_text(rules)])
        else:
            rows.append([label("cookie_kind", k), _t("cookie_never", lang), "—"])
    s.blocks.append(Table([_t("cookie", lang), _t("cookie_rule", lang), _t("law", lang)], rows))
    s.blocks.append(Para(_t("cookies_no_data", lang)))
    return s


# --- rendering ---------------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(doc: Document) -> str:
    out = [f"# {doc.title}", "", f"**{doc.subtitle}**", "", doc.intro, ""]
    for n, sec in enumerate(doc.sections, start=1):
        out += [f"## {n}. {sec.title}", ""]
        for b in sec.blocks:
            if isinstance(b, Para):
                out += [f"_{b.text}_" if b.note else b.text, ""]
            elif isinstance(b, Items):
                out += [f"- {i}" for i in b.items] + [""]
            elif isinstance(b, Table):
                head = b.head or ["", ""]
                out.append("| " + " | ".join(_md_cell(h) for h in head) + " |")
                out.append("|" + "---|" * len(head))
                out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
                out.append("")
            elif isinstance(b, Links):
                out += [f"- {lid}: [{title}]({url})" if url else f"- {lid}: {title}" for lid, title, url in b.links] + [""]
    out += ["---", "", f"_{doc.footer}_", ""]
    return "\n".join(out)


_CSS = """
:root { color-scheme: light; --ink: #1d2329; --muted: #55606b; --line: #d5dbe1; --accent: #0b5cad; --band: #f3f6f9; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif; color: var(--ink); background: #fff; }
main { max-width: 52rem; margin: 0 auto; padding: 2rem 1.25rem 3rem; }
header { border-bottom: 3px solid var(--accent); margin-bottom: 1.5rem; padding-bottom: .75rem; }
h1 { font-size: 2rem; margin: 0 0 .25rem; }
.subtitle { color: var(--muted); margin: 0; font-weight: 600; }
h2 { font-size: 1.25rem; margin: 2rem 0 .5rem; padding-top: .5rem; border-top: 1px solid var(--line); }
p { margin: .5rem 0; }
.note { color: var(--muted); font-size: .92rem; }
ul { margin: .25rem 0 .75rem; padding-left: 1.4rem; }
li { margin: .15rem 0; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; font-size: .95rem; }
th, td { text-align: left; vertical-align: top; padding: .4rem .6rem; border-bottom: 1px solid var(--line); }
thead th { background: var(--band); border-bottom: 2px solid var(--line); }
table.facts th { width: 14rem; background: none; font-weight: 600; }
.short { white-space: nowrap; }
td:first-child { min-width: 9rem; }
a { color: var(--accent); }
footer { margin-top: 2.5rem; padding-top: .75rem; border-top: 1px solid var(--line); color: var(--muted); font-size: .88rem; }
@media print { main { max-width: none; } a { color: inherit; } }
""".strip()


def to_html(doc: Document) -> str:
    e = html.escape
    out = [
        "<!doctype html>",
        f'<html lang="{e(doc.lang)}">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(doc.title)} · {e(doc.subtitle)}</title>",
        f"<style>\n{_CSS}\n</style>",
        "</head>",
        "<body>",
        "<main>",
        "<header>",
        f"<h1>{e(doc.title)}</h1>",
        f'<p class="subtitle">{e(doc.subtitle)}</p>',
        "</header>",
        f"<p>{e(doc.intro)}</p>",
    ]
    for n, sec in enumerate(doc.sections, start=1):
        out.append(f'<section aria-labelledby="s{n}">')
        out.append(f'<h2 id="s{n}">{n}. {e(sec.title)}</h2>')
        for b in sec.blocks:
            out += list(_html_block(b))
        out.append("</section>")
    out += [f"<footer><p>{e(doc.footer)}</p></footer>", "</main>", "</body>", "</html>", ""]
    return "\n".join(out)


def _html_block(b: Para | Items | Table | Links) -> Iterator[str]:
    e = html.escape
    if isinstance(b, Para):
        yield f'<p class="note">{e(b.text)}</p>' if b.note else f"<p>{e(b.text)}</p>"
    elif isinstance(b, Items):
        yield "<ul>" + "".join(f"<li>{e(i)}</li>" for i in b.items) + "</ul>"
    elif isinstance(b, Table):
        if not b.head:  # a two-column list of facts: the first cell heads its row
            yield '<table class="facts"><tbody>' + "".join(
                f'<tr><th scope="row">{e(r[0])}</th>' + "".join(f"<td>{e(c)}</td>" for c in r[1:]) + "</tr>" for r in b.rows
            ) + "</tbody></table>"
            return
        # a last column of short cells (citations, deadlines) does not wrap
        n = len(b.head)
        short = max((len(r[-1]) for r in b.rows), default=0) <= 28
        cls = lambda i: ' class="short"' if short and i == n - 1 else ""  # noqa: E731
        yield ("<table><thead><tr>" + "".join(f'<th scope="col"{cls(i)}>{e(h)}</th>' for i, h in enumerate(b.head)) + "</tr></thead><tbody>"
               + "".join("<tr>" + "".join(f"<td{cls(i)}>{e(c)}</td>" for i, c in enumerate(r)) + "</tr>" for r in b.rows)
               + "</tbody></table>")
    elif isinstance(b, Links):
        items = []
        for lid, title, url in b.links:
            safe = url if url.startswith(("https://", "http://")) else ""
            link = f'<a href="{e(safe)}">{e(title)}</a>' if safe else e(title)
            items.append(f"<li><strong>{e(lid)}</strong>: {link}</li>")
        yield "<ul>" + "".join(items) + "</ul>"


def render(ps: PolicySet, lang: str = "en", fmt: str = "md") -> str:
    """The privacy notice of ``ps`` in ``lang`` (fi or en) as ``fmt`` (md or html)."""
    if lang not in ("fi", "en"):
        raise ValueError(f"unknown language {lang!r}; use fi or en")
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use md or html")
    doc = build(ps, lang)
    return to_html(doc) if fmt == "html" else to_markdown(doc)
