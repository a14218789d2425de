"""The ``kti-policy`` command: thin click commands over the library.

Exit codes: 0 clean / passed / decided, 1 invalid policies or failing tests, 2 bad usage or input.
Only this module prints and chooses exit codes.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from kti_policy.errors import KtiError, PolicyError, PolicyErrors
from kti_policy.policy.loader import load_policy_set
from kti_policy.policy.model import PolicySet


def _hooks_dir(option: str | None) -> Path | None:
    path = Path(option or os.environ.get("KTI_HOOKS_DIR", "hooks"))
    return path if path.is_dir() else None


def _print_errors(errors: list[PolicyError]) -> None:
    for e in sorted(errors, key=PolicyError.sort_key):
        click.echo(str(e), err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kti-policy")
def main() -> None:
    """kti-policy: personal-data rules as code (check, test, eval, notice, serve)."""



def _obligation_detail(o: dict[str, Any]) -> str:
    """" (2026-04-02)", " (chargeable)", " (free)" or nothing: an obligation without a date or a
    fee (verify_identity, notify_recipients) is not "free"."""
    if o.get("due"):
        return f" ({o['due']})"
    if "chargeable" in o:
        return " (chargeable)" if o["chargeable"] else " (free)"
    return ""

@main.command()
@click.argument("directory", default="policies", type=click.Path(file_okay=False))
@click.option("--hooks", "hooks_dir", default=None, help="Hooks folder (default: $KTI_HOOKS_DIR or ./hooks).")
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option("--lang", type=click.Choice(["en", "fi"]), default="en", help="Language of the notice conflicts' explanations.")
def check(directory: str, hooks_dir: str | None, strict: bool, fmt: str, lang: str) -> None:
    """Validate every policy, policy test and hook file; errors as file:line:col: message.

    After the result, lists the notice conflicts (rules marked overrides_notice: they follow the
    law where the register notice says otherwise) as information; they never change the exit code.
    """
    from kti_policy.verify.policytest import check_rule_references, load_cases

    problems: list[PolicyError] = []
    policy_set = None
    try:
        policy_set = load_policy_set(directory)
    except PolicyErrors as exc:
        problems += exc.errors
    cases, case_errors = load_cases(directory)
    problems += case_errors
    if policy_set is not None:
        problems += check_rule_references(cases, policy_set)
        problems += _engine_problems(policy_set)
        problems += _lint(policy_set)
    hd = _hooks_dir(hooks_dir)
    if hd is not None:
        problems += _check_hooks(hd, policy_set.vocabulary.ids("data_category") if policy_set else None)
    errors = [p for p in problems if p.severity == "error" or strict]
    warnings = [p for p in problems if p not in errors]
    if fmt == "json":
        click.echo(json.dumps({"ok": not errors, "policy_version": policy_set.version if policy_set else None,
                               "problems": [p.to_dict() for p in sorted(problems, key=PolicyError.sort_key)],
                               "notice_conflicts": _notice_conflicts(policy_set, lang)}, indent=2, ensure_ascii=False))
    else:
        _print_errors(problems)
        if policy_set is not None and not errors:
            n_rules = len(policy_set.rules)
            click.echo(f"ok: {len(policy_set.policies)} policies, {n_rules} rules, {len(cases)} test cases, "
                       f"version {policy_set.version}" + (f", {len(warnings)} warnings" if warnings else ""))
        else:
            click.echo(f"{len(errors)} errors, {len(warnings)} warnings", err=True)
        if policy_set is not None:
            from kti_policy.policy.lint import notice_conflicts_text

            for line in notice_conflicts_text(policy_set, lang):
                click.echo(line)
    sys.exit(1 if errors else 0)


def _notice_conflicts(policy_set: PolicySet | None, lang: str) -> list[dict[str, Any]]:
    if policy_set is None:
        return []
    from kti_policy.policy.lint import notice_conflicts

    return [c.to_dict(policy_set, lang) for c in notice_conflicts(policy_set)]


def _check_hooks(directory: Path, categories: list[str] | None = None) -> list[PolicyError]:
    from kti_policy.hooks.subscriptions import check_hooks

    return list(check_hooks(directory, categories=categories))


def _engine_problems(policy_set: Any) -> list[PolicyError]:
    from kti_policy.decide.decision import engine_problems

    return engine_problems(policy_set)


def _lint(policy_set: Any) -> list[PolicyError]:
    try:
        from kti_policy.policy.lint import lint_policy_set
    except ImportError:
        return []
    return list(lint_policy_set(policy_set))


def _echo_rules(policy_set: PolicySet, rule_ids: list[str], what: str) -> None:
    """One line per rule: its file:line (when known), ``what``, its id."""
    for rid in rule_ids:
        rule = policy_set.rule(rid)
        where = f"{rule.pos}: " if rule is not None and rule.pos else ""
        click.echo(f"  {where}{what}: {rid}")


@main.command("test")
@click.argument("directory", default="policies", type=click.Path(file_okay=False))
@click.option("--junit", "junit", type=click.Path(dir_okay=False), help="Write JUnit XML here.")
@click.option("--coverage", is_flag=True,
              help="List the rules no test case exercised or tested on one side only (and fail when any).")
@click.option("-v", "--verbose", is_flag=True, help="Print every case.")
def test_cmd(directory: str, junit: str | None, coverage: bool, verbose: bool) -> None:
    """Run the YAML policy tests in DIRECTORY/tests."""
    from kti_policy.verify.policytest import junit_xml, run_tests

    try:
        policy_set = load_policy_set(directory)
    except PolicyErrors as exc:
        _print_errors(exc.errors)
        click.echo("the policies do not load; no test was run", err=True)
        sys.exit(1)
    run = run_tests(directory, policy_set)
    _print_errors(run.errors)
    for r in run.results:
        if not r.passed:
            click.echo(f"FAIL {r.case.position}: {r.case.suite} :: {r.case.name}")
            for f in r.failures:
                click.echo(f"    {f}")
        elif verbose:
            click.echo(f"ok   {r.case.suite} :: {r.case.name}")
    if junit:
        Path(junit).write_bytes(junit_xml(run))
    failed_coverage = False
    if coverage:
        total = len(run.rule_ids)
        covered = total - len(run.uncovered)
        pct = 100.0 * covered / total if total else 100.0
        click.echo(f"coverage: {covered}/{total} rules decided at least one case ({pct:.0f}%)")
        _echo_rules(policy_set, run.uncovered, "not exercised")
        one_sided = run.one_sided
        click.echo(f"both sides: {covered - len(one_sided)}/{total} rules also have a case of the same "
                   "operation where they do not apply")
        _echo_rules(policy_set, one_sided, "tested on one side only")
        failed_coverage = bool(run.uncovered or one_sided)
    if not run.results:
        click.echo(f"no test cases found in {Path(directory) / 'tests'}", err=True)
    click.echo(run.summary())
    sys.exit(0 if run.ok and not failed_coverage else 1)


@main.command("eval")
@click.argument("request_json")
@click.option("--policies", "directory", default=lambda: os.environ.get("KTI_POLICY_DIR", "policies"),
              show_default="$KTI_POLICY_DIR or ./policies")
@click.option("--lang", type=click.Choice(["en", "fi"]), default="en")
@click.option("--facts", "facts_json", default=None, help="Recorded facts as JSON (as in policy tests).")
@click.option("--events", "events_json", default=None,
              help="Recorded events as a JSON list of {type, occurred_at, data}, folded as they stood at --at.")
@click.option("--at", "at", default=None, help="Decide as at this ISO 8601 time (the request's 'at').")
@click.option("--explain", is_flag=True, help="Show which conditions of each rule held.")
@click.option("--json", "as_json", is_flag=True, help="Print the response body as JSON.")
def eval_cmd(request_json: str, directory: str, lang: str, facts_json: str | None, events_json: str | None,
             at: str | None, explain: bool, as_json: bool) -> None:
    """Decide one request (JSON, or - for stdin) and print it with its reasons.

    With --at the request is decided as at that time (deadlines and duration conditions count to
    it); with --events the subject's facts are the events folded as they stood then (as-of)."""
    from kti_policy.decide.decision import Decider, build_context
    from kti_policy.decide.operation import parse_operation
    from kti_policy.facts.fold import FactEvent, SubjectFacts, fold_events, parse_time
    from kti_policy.policy.conditions import explain_rule

    raw = sys.stdin.read() if request_json == "-" else request_json
    try:
        body = json.loads(raw)
        facts = SubjectFacts.from_dict(json.loads(facts_json)) if facts_json else SubjectFacts()
        if at is not None and isinstance(body, dict):
            body["at"] = at
        if events_json:
            events = json.loads(events_json)
            if not isinstance(events, list):
                raise ValueError("--events must be a JSON list of {type, occurred_at, data}")
            when = parse_time(body["at"]) if isinstance(body, dict) and body.get("at") else None
            facts = fold_events(
                (FactEvent(e["type"], parse_time(e["occurred_at"]), e.get("data") or {}, i) for i, e in enumerate(events)),
                when,
            )
    except (json.JSONDecodeError, ValueError, TypeError, KeyError) as exc:
        click.echo(f"error: not valid JSON: {exc}", err=True)
        sys.exit(2)
    try:
        policy_set = load_policy_set(directory)
    except PolicyErrors as exc:
        _print_errors(exc.errors)
        sys.exit(1)
    try:
        op = parse_operation(body, policy_set.vocabulary)
    except KtiError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(2)
    decision = Decider(policy_set).decide(op, facts)
    out = decision.to_dict(lang)
    if as_json:
        if explain:
            ctx = build_context(op, decision.facts, decision.evaluated_at)
            out["explain"] = [explain_rule(r, ctx, lang) for r in policy_set.rules]
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    click.echo(f"{out['decision'].upper()}  (policy {out['policy_version']})")
    for r in out["reasons"]:
        cite = f" [{r['source']}]" if r["source"] else ""
        if r.get("law"):
            cite += f" ({', '.join(r['law'])})"
        click.echo(f"  {r['effect']:<6} {r['rule']}{cite}: {r['message']}")
    for o in out["obligations"]:
        click.echo(f"  obligation {o['type']}{_obligation_detail(o)}: {o['message']}")
    if explain:
        from kti_policy.policy.conditions import explain as explain_cond

        ctx = build_context(op, decision.facts, decision.evaluated_at)
        click.echo("\nrules:")
        for rule in policy_set.rules:
            matched = rule.id in decision.matched
            click.echo(f"  {'MATCH' if matched else '     '} {rule.effect:<6} {rule.id}")
            for line in explain_cond(rule.when, ctx, lang).lines(3):
                click.echo(line)
            if rule.unless is not None:
                click.echo("      unless:")
                for line in explain_cond(rule.unless, ctx, lang).lines(4):
                    click.echo(line)


@main.command("notice")
@click.argument("directory", default="policies", type=click.Path(file_okay=False))
@click.option("--lang", type=click.Choice(["en", "fi"]), default="en", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["md", "html"]), default="md", show_default=True)
@click.option("--output", "-o", "output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the notice to this file (default: standard output).")
def notice_cmd(directory: str, lang: str, fmt: str, output: str | None) -> None:
    """Write the privacy notice (GDPR 13/14) generated from the policies in DIRECTORY.

    Controller and contact come from the notice: section of vocabulary.yaml; purposes, data,
    sources, recipients, transfers, retention, rights, deadlines and cookies from the vocabulary,
    lists, periods, laws and rules, so the published notice follows the rules enforced."""
    from kti_policy.policy.notice import render

    try:
        policy_set = load_policy_set(directory)
    except PolicyErrors as exc:
        _print_errors(exc.errors)
        click.echo("the policies do not load; no notice was written", err=True)
        sys.exit(1)
    text = render(policy_set, lang, fmt)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        click.echo(f"error: cannot write {output}: {exc}", err=True)
        sys.exit(2)
    click.echo(f"wrote {output} ({lang}, {fmt}, policy version {policy_set.version})", err=True)


def _register_optional() -> None:
    """Commands that live beside their subsystem (serve, deliver, diff)."""
    for module, name in (("tools.serve", "serve_command"), ("hooks.delivery", "deliver_command"), ("tools.diff", "diff_command")):
        try:
            mod = __import__(f"kti_policy.{module}", fromlist=[name])
        except ImportError:
            continue
        cmd = getattr(mod, name, None)
        if cmd is not None:
            main.add_command(cmd)


_register_optional()
