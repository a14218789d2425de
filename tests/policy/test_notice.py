"""The privacy notice generated from the pack (issue 11 item 4): ``kti-policy notice`` and
``GET /v1/notice``. Everything the pack names appears in both languages; the HTML parses with
balanced tags and escapes pack texts; a label changed in a copy of the pack changes the notice."""

from __future__ import annotations

import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kti_policy.errors import PolicyErrors
from kti_policy.policy.loader import load_policy_set
from kti_policy.policy.model import PolicySet
from kti_policy.policy.notice import permitted_purposes, permitted_sources, render
from kti_policy.tools.cli import main

REPO = Path(__file__).resolve().parents[2]
PACK = REPO / "policies"
LANGS = ("fi", "en")
VOID = {"meta", "link", "br", "hr", "img", "input", "col", "area", "base", "wbr", "source"}


@pytest.fixture(scope="module")
def pack() -> PolicySet:
    return load_policy_set(PACK)


class _Balance(HTMLParser):
    """Every start tag closed in order; the text collected (entities decoded)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.tags.append(tag)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> _Balance:
    p = _Balance()
    p.feed(html)
    p.close()
    return p


def _visible(ps: PolicySet, lang: str, fmt: str) -> str:
    text = render(ps, lang, fmt)
    if fmt == "html":
        return " ".join(parse(text).text)
    return text


# --- everything the pack names appears, in both languages ---------------------------------------


@pytest.mark.parametrize("fmt", ["md", "html"])
@pytest.mark.parametrize("lang", LANGS)
def test_every_purpose_category_source_recipient_period_and_right_appears(pack: PolicySet, lang: str, fmt: str) -> None:
    text = _visible(pack, lang, fmt)
    v = pack.vocabulary
    purposes, _ = permitted_purposes(pack)
    assert set(purposes) == set(v.lists["register_purposes"].values)  # what purposes.register permits
    for p in purposes:
        assert v.label("purpose", p, lang) in text, p
    for c, entry in v.kinds["data_category"].items():  # special ones too: the notice says they are not processed
        assert entry.label.get(lang) in text, c
    for s in v.ids("source"):  # permitted and refused
        assert v.label("source", s, lang) in text, s
    for r in v.ids("recipient_type"):
        assert v.label("recipient_type", r, lang) in text, r
    for name, period in v.periods.items():
        assert period.label.get(lang) in text and period.period.text(lang) in text, name
    for rt in v.ids("request_type"):
        assert v.label("request_type", rt, lang) in text, rt
    for kind in ("objection_scope", "consent_purpose", "cookie_kind", "transfer_safeguard", "legal_basis_type"):
        for x in v.ids(kind):
            if kind == "legal_basis_type" and not any(x in b for b in v.notice.bases.values()):  # type: ignore[union-attr]
                continue
            assert v.label(kind, x, lang) in text, (kind, x)
    for lst in ("eea_countries", "adequacy_countries"):
        assert v.lists[lst].label.get(lang) in text and v.lists[lst].checked in text
        assert ", ".join(v.lists[lst].values) in text
    for law in v.laws.values():
        assert law.title.get(lang) in text
    info = v.notice
    assert info is not None
    for s in (info.controller, info.address, info.email):
        assert s in text


def test_the_notice_follows_the_rules(pack: PolicySet) -> None:
    en = render(pack, "en", "md")
    permitted, refused = permitted_sources(pack)
    assert set(refused) == {"purchased_list", "web_scraping"}  # sources.refused (S1)
    assert "Data is never obtained from: Purchased contact list, Data scraped from websites." in en
    assert "Credit information register (only for: Handling assignments and debt collection, Risk management)" in en  # S2
    assert "| Strictly necessary cookie | without consent" in en  # C1
    assert "| Statistics cookie | only with your prior consent | SVPL 205 |" in en  # C2
    assert "| Question or feedback about the register | 2 business days |" in en  # Q1, §2
    assert "| 1 month |" in en and "within 3 months of receipt" in en and "within 1 month (GDPR 12(3)" in en  # Q1, Q2
    assert "| Third party | Only with your consent. | GDPR 6(1)(a), GDPR 7 |" in en  # D2, D3
    assert "(GDPR 44, GDPR 45, GDPR 46)" in en  # D6
    assert "(GDPR 9(1), GDPR 10)" in en  # P2
    assert "tietosuojavaltuutettu" in en and "tietosuojavaltuutetulle" in render(pack, "fi", "md")
    fi = render(pack, "fi", "md")
    assert "| Kysymys tai palaute rekisteristä" not in fi  # the labels are the pack's, not invented
    assert "| Rekisteriä koskeva kysymys tai palaute | 2 arkipäivää |" in fi


def test_the_html_parses_balanced_and_readable(pack: PolicySet) -> None:
    for lang in LANGS:
        html = render(pack, lang, "html")
        assert html.startswith("<!doctype html>\n") and f'<html lang="{lang}">' in html
        p = parse(html)
        assert p.problems == [] and p.stack == []
        assert p.tags.count("h1") == 1 and p.tags.count("main") == 1 and p.tags.count("style") == 1
        assert "<script" not in html
        assert p.tags.count("h2") >= 10


def test_the_html_is_valid_for_an_html5_parser(pack: PolicySet) -> None:
    html5lib = pytest.importorskip("html5lib", reason="html5lib is not installed; the stdlib parser test above still runs")
    parser = html5lib.HTMLParser(strict=True)
    parser.parse(render(pack, "en", "html"))


def _copy(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(PACK, target, ignore=shutil.ignore_patterns("tests"))
    return target


def test_a_label_changed_in_the_pack_changes_the_notice(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    vocab = folder / "vocabulary.yaml"
    text = vocab.read_text(encoding="utf-8")
    old = "research: {fi: Tutkimustoiminta, en: Research}"
    assert old in text
    vocab.write_text(text.replace(old, "research: {fi: Tutkimus <&> kehitys, en: Market research & <surveys>}"), encoding="utf-8")
    ps = load_policy_set(folder)
    md = render(ps, "en", "md")
    assert "| Market research & <surveys> | Legitimate interest |" in md and "| Research |" not in md
    html = render(ps, "fi", "html")
    assert "Tutkimus &lt;&amp;&gt; kehitys" in html and "Tutkimus <&> kehitys" not in html  # escaped
    assert parse(html).problems == []
    # a purpose the rules no longer permit leaves the notice
    lst = "values: [customer_relationship, rights_and_obligations, online_services, research, "
    text = vocab.read_text(encoding="utf-8")
    assert lst in text
    vocab.write_text(text.replace(lst, "values: [customer_relationship, rights_and_obligations, online_services, "), encoding="utf-8")
    assert "Market research" not in render(load_policy_set(folder), "en", "md")


def test_the_notice_section_is_checked_with_positions(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    vocab = folder / "vocabulary.yaml"
    text = vocab.read_text(encoding="utf-8")
    broken = (text.replace("  email: perinta@ktipartners.fi\n", "  email: not-an-address\n  phone: 123\n")
              .replace("    research: [legitimate_interest]", "    reserch: [legitimate_intrest]"))
    vocab.write_text(broken, encoding="utf-8")
    with pytest.raises(PolicyErrors) as exc:
        load_policy_set(folder)
    lines = broken.splitlines()
    got = {(e.code, e.position.line) for e in exc.value.errors}
    line = next(i for i, x in enumerate(lines, start=1) if "not-an-address" in x)
    assert ("wrong_type", line) in got
    assert ("unknown_key", line + 1) in got
    line = next(i for i, x in enumerate(lines, start=1) if "reserch" in x)
    assert ("unknown_vocabulary_id", line) in got
    assert any("did you mean 'research'" in e.message for e in exc.value.errors)
    # without a notice: section the pack still loads and the notice says what it can
    vocab.write_text(text[: text.index("notice:\n")] + text[text.index("# Data the rules read"):], encoding="utf-8")
    ps = load_policy_set(folder)
    assert ps.vocabulary.notice is None
    md = render(ps, "en", "md")
    assert "| Research | not stated |" in md


def test_render_refuses_unknown_language_or_format(pack: PolicySet) -> None:
    with pytest.raises(ValueError, match="language"):
        render(pack, "sv", "md")
    with pytest.raises(ValueError, match="format"):
        render(pack, "en", "pdf")


# --- the command ---------------------------------------------------------------------------------


def run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.stdout, res.stderr


def test_cli_writes_the_notice(tmp_path: Path, pack: PolicySet) -> None:
    code, out, _ = run("notice", str(PACK), "--lang", "fi")
    assert code == 0 and out == render(pack, "fi", "md")
    target = tmp_path / "notice.html"
    code, out, err = run("notice", str(PACK), "--lang", "en", "--format", "html", "--output", str(target))
    assert code == 0 and out == "" and f"wrote {target}" in err
    assert target.read_text(encoding="utf-8") == render(pack, "en", "html")


def test_cli_exit_codes(tmp_path: Path) -> None:
    code, _, err = run("notice", str(tmp_path / "missing"))
    assert code == 1 and "does not exist" in err and "no notice was written" in err
    folder = _copy(tmp_path)
    (folder / "vocabulary.yaml").write_text("vocabulary: []\n", encoding="utf-8")
    code, _, err = run("notice", str(folder))
    assert code == 1 and "vocabulary.yaml:1:" in err
    assert run("notice", str(PACK), "--format", "pdf")[0] == 2
    assert run("notice", str(PACK), "--lang", "sv")[0] == 2
    code, _, err = run("notice", str(PACK), "--output", str(tmp_path / "no" / "such" / "dir" / "n.md"))
    assert code == 2 and "cannot write" in err


# --- the endpoint --------------------------------------------------------------------------------


@pytest.fixture
def client(app_config: dict[str, Any]) -> Any:
    from kti_policy.api.app import create_app

    app = create_app({**app_config, "KTI_POLICY_DIR": str(PACK), "KTI_API_KEYS": "q-key:query"})
    yield app.test_client()
    app.extensions["kti"].close()


def test_get_notice_is_public_and_follows_lang_and_format(client: Any, pack: PolicySet) -> None:
    resp = client.get("/v1/notice?lang=fi")  # no key: public information, like /openapi.json
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    assert resp.get_data(as_text=True) == render(pack, "fi", "html")
    assert resp.headers["Content-Language"] == "fi" and "script-src" not in resp.headers["Content-Security-Policy"]
    resp = client.get("/v1/notice?format=md", headers={"Accept-Language": "fi-FI"})
    assert resp.mimetype == "text/markdown" and resp.get_data(as_text=True) == render(pack, "fi", "md")
    assert client.get("/v1/notice").get_data(as_text=True) == render(pack, "en", "html")
    for bad in ("lang=sv", "format=pdf"):
        resp = client.get(f"/v1/notice?{bad}")
        assert resp.status_code == 400 and resp.get_json()["error"] == "bad_request"
    spec = client.get("/openapi.json").get_json()
    op = spec["paths"]["/v1/notice"]["get"]
    assert op["security"] == [] and {"200", "400"} <= set(op["responses"])
    assert {"text/html", "text/markdown"} <= set(op["responses"]["200"]["content"])


def test_the_readme_notice_examples_run_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pack: PolicySet) -> None:
    """README's ``kti-policy notice`` lines, run from a folder where ``policies`` is the pack."""
    import shlex

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    lines = [ln.split("#", 1)[0].strip() for ln in readme.splitlines() if ln.startswith(".venv/bin/kti-policy notice")]
    assert len(lines) >= 2
    (tmp_path / "policies").symlink_to(PACK)
    monkeypatch.chdir(tmp_path)
    for line in lines:
        args = shlex.split(line)[1:]
        code, out, err = run(*args)
        assert code == 0, (line, err)
        if "--output" in args:
            written = tmp_path / args[args.index("--output") + 1]
            lang = args[args.index("--lang") + 1]
            assert written.read_text(encoding="utf-8") == render(pack, lang, "html")
        else:
            assert out.startswith("# Privacy notice\n")
    assert "GET /v1/notice?lang=fi|en&format=html|md" in readme
