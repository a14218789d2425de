"""Impact analysis: which recorded decisions and policy test cases a policy change would decide differently.

``kti-policy diff OLD NEW`` replays every decision-log line (CONTRACT section 6: the whole request
with the subject pseudonymised, the facts the decision used, the time) and every policy test case
against both policy sets, at the time the decision was made, so deadlines come out the same. A
decision *changes* when its outcome (allow, deny, or a request the vocabulary now rejects), its set
of reason rule ids or its obligations (type, rule, due date, chargeable; not the wording) differ.
Changes are grouped by the rules that newly appear in, or disappear from, the reasons, so a
reviewer sees "this edit turns 1,200 allows into denies through rule X" with a few examples.

``--old REV`` reads the old folder from git (``ls-tree`` + ``cat-file``, no checkout), so a CI job
can run ``kti-policy diff --old origin/main policies``. Exit codes: 0 nothing changed, 1 something
did (needs review), 2 the inputs could not be used.

Speed: one ``Decider`` per side (it caches rule matches by the fact projection), one schema parse
per line when both vocabularies agree, and parsed facts shared between lines with equal facts.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO, Any, cast

import click

from kti_policy.decide.decision import DEFAULT_DENY, EVAL_ERROR, Decider, Decision
from kti_policy.decide.operation import Operation, parse_operation
from kti_policy.errors import (
    KtiError,
    PolicyError,
    PolicyErrors,
    Position,
    RequestError,
    UnknownVocabularyId,
)
from kti_policy.facts.fold import SubjectFacts, parse_time
from kti_policy.policy.loader import VOCABULARY_FILE, build_policy_set, load_policy_set
from kti_policy.policy.model import PolicySet, Rule
from kti_policy.verify.policytest import (
    TESTS_DIR,
    TestCase,
    case_facts,
    load_case_files,
    load_cases,
    load_cases_text,
    test_files,
    yaml_files,
)

MARKDOWN_LIMIT = 60_000  # characters; GitHub refuses comments over 65,536
MAX_PROBLEMS = 50  # bad log lines reported before the rest are only counted


class DiffError(KtiError):
    """The diff cannot run on these inputs; ``problems`` say where (file:line:col)."""

    code = "diff_input_error"

    def __init__(self, message: str, problems: list[PolicyError] | None = None) -> None:
        super().__init__(message, {"errors": [p.to_dict() for p in problems or []]})
        self.problems = list(problems or [])


# --- outcomes ----------------------------------------------------------------------------------


ObligationKey = tuple[str, str, str | None, bool | None]  # type, rule, due (ISO date), chargeable


@dataclass(frozen=True)
class Outcome:
    """What one policy set made of one request; ``invalid`` when its vocabulary rejects the request."""

    decision: str  # allow | deny | invalid
    rules: tuple[str, ...] = ()  # sorted reason rule ids
    obligations: tuple[ObligationKey, ...] = ()  # sorted
    error: str | None = field(default=None, compare=False)

    @classmethod
    def of(cls, d: Decision) -> Outcome:
        obligations = tuple(sorted(
            ((o.type, o.rule, o.due.isoformat() if o.due else None, o.chargeable) for o in d.obligations), key=repr))
        return cls(d.decision, tuple(sorted(set(d.rule_ids))), obligations, d.error)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "decision": self.decision,
            "rules": list(self.rules),
            "obligations": [{"type": t, "rule": r, "due": due, "chargeable": ch} for t, r, due, ch in self.obligations],
        }
        if self.error:
            out["error"] = self.error
        return out


def _transition(old: Outcome, new: Outcome) -> str:
    if old.decision != new.decision:
        return f"{old.decision}->{new.decision}"
    return "reasons" if old.rules != new.rules else "obligations"


# --- the two sides -----------------------------------------------------------------------------


@dataclass
class PolicySource:
    """One side of the diff: the loaded set, where it came from, and the test cases it ships."""

    label: str
    policy_set: PolicySet
    cases: list[TestCase]


def load_folder(directory: str | Path) -> PolicySource:
    """A policy folder on disk; raises ``PolicyErrors`` (policies) or ``DiffError`` (test files)."""
    policy_set = load_policy_set(directory)
    cases, errors = load_cases(directory)
    if errors:
        raise DiffError(f"the policy tests in {directory} do not load", errors)
    return PolicySource(str(directory), policy_set, cases)


def load_git_folder(directory: str | Path, rev: str) -> PolicySource:
    """The folder ``directory`` as it was at git revision ``rev`` (read from git, not checked out)."""
    top, prefix = _git_location(Path(directory))
    _git(top, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", what=f"unknown git revision {rev!r}")
    listing = _git(top, "ls-tree", "-r", "-z", rev, "--", prefix or ".", what=f"cannot list {prefix or '.'} at {rev}")
    entries: list[tuple[str, str]] = []  # (object id, path)
    for item in listing.split(b"\0"):
        if not item:
            continue
        meta, path = item.decode("utf-8", "surrogateescape").split("\t", 1)
        mode, kind, oid = meta.split()
        if kind == "blob" and mode != "120000":
            entries.append((oid, path))
    base = PurePosixPath(prefix.rstrip("/")) if prefix else PurePosixPath("")
    wanted: list[tuple[str, str, str]] = []  # (object id, repo path, role)
    for oid, path in entries:
        rel = PurePosixPath(path).relative_to(base) if prefix else PurePosixPath(path)
        if rel.suffix not in (".yaml", ".yml"):
            continue
        if len(rel.parts) == 1:
            wanted.append((oid, path, rel.name))
        elif rel.parts[0] == TESTS_DIR:
            wanted.append((oid, path, TESTS_DIR))
    if not any(role == VOCABULARY_FILE for _, _, role in wanted):
        raise DiffError(f"{rev}:{prefix or '.'} is not a policy folder (no {VOCABULARY_FILE})")
    texts = _git_blobs(top, [oid for oid, _, _ in wanted])
    sources: dict[str, tuple[str, str]] = {}
    cases: list[TestCase] = []
    case_errors: list[PolicyError] = []
    for (oid, path, role) in wanted:
        display = f"{rev}:{path}"
        if role == TESTS_DIR:
            c, e = load_cases_text(texts[oid], display)
            cases += c
            case_errors += e
        else:
            sources[role] = (display, texts[oid])
    policy_set = build_policy_set(sources, f"{rev}:{prefix or '.'}")
    if case_errors:
        raise DiffError(f"the policy tests at {rev} do not load", case_errors)
    return PolicySource(f"{rev}:{str(base) or '.'}", policy_set, cases)


def _git(cwd: Path, *args: str, what: str, stdin: bytes | None = None) -> bytes:
    try:
        res = subprocess.run(["git", "-C", str(cwd), *args], input=stdin, capture_output=True, check=False)
    except OSError as exc:
        raise DiffError(f"{what}: cannot run git: {exc}") from exc
    if res.returncode != 0:
        detail = res.stderr.decode("utf-8", "replace").strip()
        raise DiffError(f"{what}" + (f": {detail}" if detail else ""))
    return res.stdout


def _git_location(directory: Path) -> tuple[Path, str]:
    if not directory.is_dir():
        raise DiffError(f"policy folder {directory} does not exist (--old needs the folder's path in the working tree)")
    top = _git(directory, "rev-parse", "--show-toplevel", what=f"{directory} is not inside a git repository")
    prefix = _git(directory, "rev-parse", "--show-prefix", what=f"{directory} is not inside a git repository")
    return Path(top.decode().strip()), prefix.decode().strip()


def _git_blobs(top: Path, oids: list[str]) -> dict[str, str]:
    """Many blobs in one ``git cat-file --batch`` call."""
    out = _git(top, "cat-file", "--batch", what="cannot read files from git", stdin="".join(o + "\n" for o in oids).encode())
    texts: dict[str, str] = {}
    pos = 0
    for oid in oids:
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        if len(header) != 3:
            raise DiffError(f"git cat-file gave no blob for {oid}")
        size = int(header[2])
        texts[oid] = out[end + 1:end + 1 + size].decode("utf-8", "replace")
        pos = end + 1 + size + 1
    return texts


# --- the report --------------------------------------------------------------------------------


@dataclass
class Group:
    """The changed decisions one rule takes part in: it appears in, or disappears from, their reasons."""

    rule: str
    status: str  # changed | added | removed | unchanged | built-in
    changed: int = 0
    appears: int = 0
    disappears: int = 0
    obligations: int = 0
    transitions: Counter[str] = field(default_factory=Counter)
    examples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "status": self.status,
            "changed": self.changed,
            "appears": self.appears,
            "disappears": self.disappears,
            "obligations": self.obligations,
            "transitions": dict(sorted(self.transitions.items())),
            "examples": self.examples,
        }


@dataclass
class DiffReport:
    old_label: str
    new_label: str
    old_version: str
    new_version: str
    rule_status: dict[str, str]
    log_lines: int = 0
    test_cases: int = 0
    changed: int = 0
    invalid_both: int = 0  # requests neither vocabulary accepts
    log_mismatches: int = 0  # logged decisions the old set no longer reproduces
    transitions: Counter[str] = field(default_factory=Counter)
    groups: dict[str, Group] = field(default_factory=dict)

    @property
    def replayed(self) -> int:
        return self.log_lines + self.test_cases

    @property
    def exit_code(self) -> int:
        return 1 if self.changed else 0

    def sorted_groups(self) -> list[Group]:
        return sorted(self.groups.values(), key=lambda g: (-g.changed, g.status == "built-in", g.rule))

    def quiet_rule_changes(self) -> list[tuple[str, str]]:
        """Rules edited, added or removed that no replayed decision exercised: untested changes."""
        return [(r, s) for r, s in sorted(self.rule_status.items())
                if s in ("changed", "added", "removed") and r not in self.groups]

    def to_dict(self) -> dict[str, Any]:
        return {
            "old": {"source": self.old_label, "policy_version": self.old_version},
            "new": {"source": self.new_label, "policy_version": self.new_version},
            "summary": {
                "replayed": self.replayed,
                "log_lines": self.log_lines,
                "test_cases": self.test_cases,
                "changed": self.changed,
                "unchanged": self.replayed - self.changed,
                "transitions": dict(sorted(self.transitions.items())),
                "invalid_in_both": self.invalid_both,
                "log_mismatches": self.log_mismatches,
            },
            "groups": [g.to_dict() for g in self.sorted_groups()],
            "untested_rule_changes": [{"rule": r, "status": s} for r, s in self.quiet_rule_changes()],
        }


def rule_status(old: PolicySet, new: PolicySet) -> dict[str, str]:
    """Each rule id of either set: changed, added, removed or unchanged (positions ignored)."""
    before: dict[str, Rule] = {r.id: r for r in old.rules}
    after: dict[str, Rule] = {r.id: r for r in new.rules}
    out = {rid: "built-in" for rid in (DEFAULT_DENY, EVAL_ERROR)}
    for rid in before.keys() | after.keys():
        if rid not in after:
            out[rid] = "removed"
        elif rid not in before:
            out[rid] = "added"
        else:
            out[rid] = "unchanged" if before[rid] == after[rid] else "changed"
    return out


# --- replay ------------------------------------------------------------------------------------


class _Side:
    def __init__(self, policy_set: PolicySet) -> None:
        self.vocabulary = policy_set.vocabulary
        self.decider = Decider(policy_set)

    def outcome(self, op: Operation | Outcome, facts: SubjectFacts, now: datetime) -> Outcome:
        if isinstance(op, Outcome):
            return op
        return Outcome.of(self.decider.decide(op, facts, now))


class Replayer:
    """Replays requests against both sets and builds the ``DiffReport``."""

    def __init__(self, old: PolicySource, new: PolicySource, examples: int = 3, now: datetime | None = None) -> None:
        self.old = _Side(old.policy_set)
        self.new = _Side(new.policy_set)
        self.same_vocabulary = old.policy_set.vocabulary == new.policy_set.vocabulary
        self.examples = examples
        self.now = now or datetime.now(UTC)
        self.report = DiffReport(old.label, new.label, old.policy_set.version, new.policy_set.version,
                                 rule_status(old.policy_set, new.policy_set))
        self._facts: dict[Any, SubjectFacts] = {}

    # requests -> operations, per vocabulary

    def _parse(self, request: Any, side: _Side) -> Operation | Outcome:
        """An operation, or an ``invalid`` outcome when only the vocabulary objects (RequestError otherwise)."""
        try:
            return parse_operation(request, side.vocabulary, replay=True)
        except UnknownVocabularyId as exc:
            return Outcome("invalid", error=exc.message)

    def _operations(self, request: Any) -> tuple[Operation | Outcome, Operation | Outcome]:
        new = self._parse(request, self.new)
        if self.same_vocabulary:
            return new, new
        return self._parse(request, self.old), new

    def _subject_facts(self, data: Any) -> SubjectFacts:
        if not data:
            return SubjectFacts()
        if not isinstance(data, Mapping):
            raise TypeError("facts must be an object")
        key = json.dumps(data, sort_keys=True, default=str)  # every fact, dates included
        facts = self._facts.get(key)
        if facts is None:
            facts = SubjectFacts.from_dict(data)
            if len(self._facts) > 100_000:
                self._facts.clear()
            self._facts[key] = facts
        return facts

    # sources

    def replay_log(self, stream: IO[bytes], display: str) -> None:
        """Replay every line of a decision log; raise ``DiffError`` naming each bad line."""
        problems: list[PolicyError] = []
        bad = 0
        for lineno, raw in enumerate(stream, 1):
            if not raw.strip():
                continue
            try:
                self._replay_line(raw, display, lineno)
            except (ValueError, TypeError, KeyError, RequestError) as exc:
                bad += 1
                if len(problems) < MAX_PROBLEMS:
                    problems.append(_line_problem(exc, display, lineno, raw))
        if problems:
            more = f" (first {len(problems)} shown)" if bad > len(problems) else ""
            raise DiffError(f"{bad} unreadable line{'s' if bad != 1 else ''} in {display}{more}", problems)

    def _replay_line(self, raw: bytes, display: str, lineno: int) -> None:
        rec = json.loads(raw)
        if not isinstance(rec, dict):
            raise TypeError("a log line must be a JSON object")
        request = rec["request"]
        facts = self._subject_facts(rec.get("facts"))
        when = rec.get("time") or (request.get("at") if isinstance(request, dict) else None)
        if not isinstance(when, str):
            raise TypeError("the line has no time (needed to replay deadlines)")
        now = datetime.fromisoformat(when)
        old_op, new_op = self._operations(request)
        old = self.old.outcome(old_op, facts, now)
        new = self.new.outcome(new_op, facts, now)
        self.report.log_lines += 1
        recorded = rec.get("decision")
        if recorded is not None and (recorded != old.decision or sorted(set(rec.get("rules") or ())) != list(old.rules)):
            self.report.log_mismatches += 1
        if old != new:
            self._record(lambda: {"source": f"{display}:{lineno}", "id": rec.get("decision_id"), "time": when,
                                  "request": request, "facts": rec.get("facts") or {}}, old, new)
        elif old.decision == "invalid":
            self.report.invalid_both += 1

    def replay_cases(self, cases: Iterable[TestCase]) -> None:
        """Replay policy test cases (each once, however many folders ship it) at the run's time."""
        problems: list[PolicyError] = []
        seen: set[str] = set()
        for case in cases:
            key = json.dumps([case.input, case.facts, case.events], sort_keys=True, default=str)
            if key in seen:
                continue
            seen.add(key)
            try:
                at = case.input.get("at")
                facts = case_facts(case, parse_time(at) if at else None)
                old_op, new_op = self._operations(case.input)
            except (RequestError, ValueError, TypeError) as exc:
                msg = exc.message if isinstance(exc, KtiError) else str(exc)
                problems.append(PolicyError("invalid_case_input", f"case {case.name!r}: {msg}", case.position))
                continue
            old = self.old.outcome(old_op, facts, self.now)
            new = self.new.outcome(new_op, facts, self.now)
            self.report.test_cases += 1
            if old != new:
                self._record(partial(_case_example, case), old, new)
            elif old.decision == "invalid":
                self.report.invalid_both += 1
        if problems:
            raise DiffError("some policy test cases cannot be replayed", problems)

    # the tally

    def _record(self, example: Callable[[], dict[str, Any]], old: Outcome, new: Outcome) -> None:
        """Count one changed decision in its groups; build its example only if a group keeps it."""
        rep = self.report
        rep.changed += 1
        kind = _transition(old, new)
        rep.transitions[kind] += 1
        before, after = set(old.rules), set(new.rules)
        touched: list[tuple[str, str]] = [(r, "appears") for r in sorted(after - before)]
        touched += [(r, "disappears") for r in sorted(before - after)]
        moved = {o[1] for o in set(old.obligations) ^ set(new.obligations)} - (after ^ before)
        touched += [(r, "obligations") for r in sorted(moved)]
        if not touched:
            touched = [("(no rule)", "appears")]
        built: dict[str, Any] | None = None
        for rule, how in touched:
            group = rep.groups.get(rule)
            if group is None:
                group = rep.groups[rule] = Group(rule, rep.rule_status.get(rule, "unknown"))
            group.changed += 1
            setattr(group, how, getattr(group, how) + 1)
            group.transitions[kind] += 1
            if len(group.examples) < self.examples:
                if built is None:
                    built = example()
                    built.update(change=kind, old=old.to_dict(), new=new.to_dict())
                group.examples.append(built)


def _case_example(case: TestCase) -> dict[str, Any]:
    return {"source": str(case.position), "id": f"{case.suite} :: {case.name}", "request": case.input, "facts": case.facts}


def _line_problem(exc: Exception, display: str, lineno: int, raw: bytes) -> PolicyError:
    if isinstance(exc, json.JSONDecodeError):
        # the line is the whole document, so its offset is the column (colno would count the newline)
        width = len(raw.decode("utf-8", "replace").rstrip("\r\n"))
        return PolicyError("bad_log_line", f"not JSON: {exc.msg}", Position(display, lineno, min(exc.pos, width) + 1))
    if isinstance(exc, KeyError):
        return PolicyError("bad_log_line", f"the line has no {exc.args[0]!r}", Position(display, lineno, 1))
    if isinstance(exc, KtiError):
        return PolicyError("bad_log_line", f"the logged request is not valid: {exc.message}", Position(display, lineno, 1))
    if isinstance(exc, UnicodeDecodeError):
        return PolicyError("bad_log_line", f"not UTF-8 text: {exc.reason}", Position(display, lineno, exc.start + 1))
    return PolicyError("bad_log_line", f"cannot replay: {exc}", Position(display, lineno, 1))


def _open_log(path: str) -> Iterator[tuple[IO[bytes], str]]:
    if path == "-":
        yield sys.stdin.buffer, "<stdin>"
        return
    try:
        fh = cast(IO[bytes], gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb"))  # noqa: SIM115
    except OSError as exc:
        raise DiffError(f"cannot read the decision log {path}: {exc.strerror or exc}") from exc
    with fh:
        yield fh, path


def run_diff(old: PolicySource, new: PolicySource, logs: Iterable[str] = (), cases: Iterable[TestCase] = (),
             examples: int = 3, now: datetime | None = None) -> DiffReport:
    """Replay the logs and the cases against both sides. Raises ``DiffError`` on unusable input."""
    replayer = Replayer(old, new, examples, now)
    problems: list[PolicyError] = []
    messages: list[str] = []
    for path in logs:
        for stream, display in _open_log(path):
            try:
                replayer.replay_log(stream, display)
            except OSError as exc:  # e.g. a truncated .gz
                raise DiffError(f"cannot read the decision log {display}: {exc}") from exc
            except DiffError as exc:
                problems += exc.problems
                messages.append(exc.message)
    try:
        replayer.replay_cases(cases)
    except DiffError as exc:
        problems += exc.problems
        messages.append(exc.message)
    if problems:
        raise DiffError("; ".join(messages), problems)
    return replayer.report


# --- rendering ---------------------------------------------------------------------------------


def summarise(request: Any, facts: Any) -> str:
    """The request and facts of an example on one line, ``path=value``, without the subject pseudonym."""
    parts: list[str] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if prefix == "subject" and k == "id":
                    continue
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, list):
            if value:
                parts.append(f"{prefix}={','.join(str(v) for v in value)}")
        elif isinstance(value, bool):
            parts.append(f"{prefix}={'true' if value else 'false'}")
        elif value is not None:
            parts.append(f"{prefix}={value}")

    walk("", request)
    if isinstance(facts, dict):
        walk("facts", {k: v for k, v in facts.items()
                       if k != "last_access_request_at" and not (k == "erasure_requested" and not v)})
    return " ".join(parts)


def _arrow(kind: str, arrow: str) -> str:
    return {"reasons": "reasons only", "obligations": "obligations only"}.get(kind, kind.replace("->", arrow))


def _headline(rep: DiffReport) -> str:
    parts = []
    if rep.log_lines or not rep.test_cases:
        parts.append(f"{rep.log_lines} logged decision{'s' if rep.log_lines != 1 else ''}")
    if rep.test_cases:
        parts.append(f"{rep.test_cases} policy test case{'s' if rep.test_cases != 1 else ''}")
    return " and ".join(parts)


def _group_line(g: Group, arrow: str) -> str:
    hows = [f"{how} {n}" for how, n in (("appears", g.appears), ("disappears", g.disappears), ("obligations", g.obligations)) if n]
    kinds = ", ".join(f"{_arrow(k, arrow)} {n}" for k, n in sorted(g.transitions.items()))
    return f"{g.changed} changed: {', '.join(hows)} ({kinds})"


def render_text(rep: DiffReport) -> str:
    lines = [f"policy diff: {rep.old_label} (version {rep.old_version}) -> {rep.new_label} (version {rep.new_version})",
             f"replayed {_headline(rep)}: {rep.changed} changed, {rep.replayed - rep.changed} unchanged"]
    width = max((len(_arrow(k, "->")) for k in rep.transitions), default=0)
    for kind, n in sorted(rep.transitions.items()):
        lines.append(f"  {_arrow(kind, '->'):<{width}}  {n:>8}")
    lines += _notes(rep, "", "")
    for g in rep.sorted_groups():
        lines += ["", f"{g.rule} [{g.status}]  {_group_line(g, '->')}"]
        for ex in g.examples:
            ident = f" {ex['id']}" if ex.get("id") else ""
            lines.append(f"  {ex['source']}{ident}")
            lines.append(f"    {_brief(ex['old'])} -> {_brief(ex['new'])}")
            lines.append(f"    {summarise(ex['request'], ex['facts'])}")
        if g.changed > len(g.examples):
            lines.append(f"  ... and {g.changed - len(g.examples)} more")
    return "\n".join(lines)


def _brief(d: Mapping[str, Any]) -> str:
    """An ``Outcome.to_dict()`` on one line: decision [rules] obligations."""
    text = f"{d['decision']} [{', '.join(d['rules'])}]"
    for o in d["obligations"]:
        text += f" {o['type']}=" + (o["due"] if o["due"] is not None else ("chargeable" if o["chargeable"] else "free"))
    if d.get("error") and d["decision"] == "invalid":
        text += f" ({d['error']})"
    return text


def _notes(rep: DiffReport, q: str, bullet: str) -> list[str]:
    out = []
    if rep.log_mismatches:
        out.append(f"{bullet}note: {rep.log_mismatches} logged decision{'s' if rep.log_mismatches != 1 else ''} "
                   "differ from what the old policies decide (the log was written under another policy version?)")
    if rep.invalid_both:
        out.append(f"{bullet}note: {rep.invalid_both} request{'s' if rep.invalid_both != 1 else ''} "
                   "use ids neither vocabulary knows")
    quiet = rep.quiet_rule_changes()
    if quiet:
        names = ", ".join(f"{q}{r}{q} ({s})" for r, s in quiet)
        out.append(f"{bullet}note: no replayed decision exercises these rule changes: {names}")
    return out


def render_markdown(rep: DiffReport) -> str:
    """A pull-request comment: a summary table, a table of rules, then a section per rule with examples."""
    md = "\u2192"
    title = (f"### Policy impact: {rep.changed} of {rep.replayed} replayed decisions change" if rep.changed
             else f"### Policy impact: none of {rep.replayed} replayed decisions changes")
    sides = f"`{rep.old_label}` (`{rep.old_version}`) {md} `{rep.new_label}` (`{rep.new_version}`)"
    lines = [title, "", f"{sides}, replaying {_headline(rep)}.", "",
             "| change | decisions |", "|---|---:|"]
    for kind, n in sorted(rep.transitions.items()):
        lines.append(f"| {_arrow(kind, ' ' + md + ' ')} | {n} |")
    lines.append(f"| unchanged | {rep.replayed - rep.changed} |")
    notes = _notes(rep, "`", "- ")
    if notes:
        lines += [""] + notes
    groups = rep.sorted_groups()
    if groups:
        lines += ["", "| rule | rule edit | decisions | appears | disappears | obligations | changes |",
                  "|---|---|---:|---:|---:|---:|---|"]
        for g in groups:
            kinds = ", ".join(f"{_arrow(k, ' ' + md + ' ')}: {n}" for k, n in sorted(g.transitions.items()))
            lines.append(f"| `{g.rule}` | {g.status} | {g.changed} | {g.appears} | {g.disappears} | {g.obligations} | {kinds} |")
        size = sum(len(line) + 1 for line in lines)
        for i, g in enumerate(groups):
            section = ["", f"#### `{g.rule}` ({g.status}): {g.changed} decision{'s' if g.changed != 1 else ''}", ""]
            for ex in g.examples:
                ident = f" `{_md_code(str(ex['id']))}`" if ex.get("id") else ""
                section.append(f"- `{_md_code(ex['source'])}`{ident}: **{_arrow(ex['change'], ' ' + md + ' ')}** "
                               f"`{_md_code(_brief(ex['old']))}` {md} `{_md_code(_brief(ex['new']))}`<br>"
                               f"`{_md_code(summarise(ex['request'], ex['facts']))}`")
            if g.changed > len(g.examples):
                section.append(f"- \u2026 and {g.changed - len(g.examples)} more")
            size += sum(len(line) + 1 for line in section)
            if size > MARKDOWN_LIMIT:
                lines += ["", f"_Examples of the other {len(groups) - i} rules left out to fit a comment; "
                              "`--format json` has them all._"]
                break
            lines += section
    return "\n".join(lines)


def _md_code(text: str) -> str:
    """Text safe inside a one-backtick code span in a GitHub comment."""
    return text.replace("`", "'").replace("|", "\\|")


def render_json(rep: DiffReport) -> str:
    return json.dumps(rep.to_dict(), indent=2, ensure_ascii=False, default=str)


# --- the command -------------------------------------------------------------------------------


def cases_from(path: str) -> list[TestCase]:
    """Policy test cases from a file, a policy folder (its tests/) or a folder of test files."""
    p = Path(path)
    if p.is_file():
        files = [p]
    elif (p / TESTS_DIR).is_dir():
        files = test_files(p)
    elif p.is_dir():
        files = yaml_files(p)
    else:
        raise DiffError(f"--cases {path}: no such file or folder")
    cases, problems = load_case_files(files)
    if problems:
        raise DiffError(f"the policy tests in {path} do not load", problems)
    return cases


@click.command("diff")
@click.argument("folders", nargs=-1, metavar="[OLD_DIR] NEW_DIR", type=click.Path(file_okay=False))
@click.option("--log", "logs", multiple=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="A decision log (JSON lines; .gz is fine; - for stdin) to replay. Repeatable.")
@click.option("--cases", "case_paths", multiple=True, type=click.Path(),
              help="Policy test cases to replay: a *_test.yaml file or a folder. Repeatable. "
                   "Default: the tests of both folders.")
@click.option("--no-cases", is_flag=True, help="Replay only the logs.")
@click.option("--old", "old_rev", metavar="REV", help="Read the old folder from git at REV (give only NEW_DIR).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text")
@click.option("--examples", type=click.IntRange(min=0), default=3, show_default=True, help="Examples per rule.")
def diff_command(folders: tuple[str, ...], logs: tuple[str, ...], case_paths: tuple[str, ...], no_cases: bool,
                 old_rev: str | None, fmt: str, examples: int) -> None:
    """Replay logged decisions and policy tests against OLD_DIR and NEW_DIR and report what changes.

    Exit 0: nothing changed; 1: some decisions change (needs review); 2: unusable input.
    """
    want = 1 if old_rev else 2
    if len(folders) != want:
        raise click.UsageError("give OLD_DIR and NEW_DIR" if want == 2 else "with --old REV give only NEW_DIR")
    try:
        new = _side(lambda: load_folder(folders[-1]), "new", folders[-1])
        old = _side(lambda: load_git_folder(folders[0], old_rev) if old_rev else load_folder(folders[0]),
                    "old", f"{old_rev}:{folders[0]}" if old_rev else folders[0])
        if no_cases:
            cases: list[TestCase] = []
        elif case_paths:
            cases = [c for path in case_paths for c in cases_from(path)]
        else:
            cases = new.cases + old.cases
        report = run_diff(old, new, logs, cases, examples)
    except DiffError as exc:
        for p in sorted(exc.problems, key=PolicyError.sort_key):
            click.echo(str(p), err=True)
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(2)
    render = {"text": render_text, "json": render_json, "markdown": render_markdown}[fmt]
    click.echo(render(report))
    sys.exit(report.exit_code)


def _side(load: Callable[[], PolicySource], which: str, where: str) -> PolicySource:
    try:
        return load()
    except PolicyErrors as exc:
        raise DiffError(f"the {which} policies ({where}) do not load", exc.errors) from exc
