"""The webhook delivery worker: drains the outbox (``Store.claim_due``) to the subscribers.

Each round claims due deliveries with a lease (``claimed_until``) and commits *before* any network
I/O, so no row lock is held while a receiver answers; a worker that dies mid-send leaves rows whose
lease expires and which another round (or worker) sends again with the same ``webhook-id``. Receivers
must therefore dedupe on ``webhook-id`` (= our event id): delivery is at least once.

Every attempt is signed afresh (Standard Webhooks, ``standardwebhooks`` 1.1.0: new
``webhook-timestamp``) over the body bytes stored when the event was recorded, sent as stored with
``requests`` (timeout 15 s, redirects not followed: a 3xx is a failure, like any non-2xx, a timeout or
a connection error). A failed attempt is retried after each delay of ``KTI_HOOK_RETRY_SCHEDULE`` in
turn (``1,1,2`` means four attempts), each delay varied by +-``KTI_HOOK_RETRY_JITTER`` (default 0.2)
and never shorter than the receiver's ``Retry-After``; after the last one the delivery is dead until
``Store.retry_delivery`` (one more attempt). Success removes the body, and with it the clear subject id.

``Worker(store).run_once()`` sends what is due now, in rounds of ``batch_size``;
``run_forever`` keeps ``concurrency`` attempts under way instead, claiming as each ends, at most
``per_subscription`` of one subscription (a receiver that hangs holds only its own slots, and the
others' deliveries go on); ``start_background()`` runs that loop in a daemon thread
(``kti-policy serve``); ``deliver_command`` is ``kti-policy deliver``, the same loop as its own process.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import datetime, timedelta
from typing import Any

import click
import requests
import urllib3
from standardwebhooks.webhooks import Webhook

from kti_policy.config import number_setting
from kti_policy.errors import ConfigError, KtiError
from kti_policy.retry_after import parse_retry_after
from kti_policy.store import metrics_events as metrics
from kti_policy.store.db import AttemptOutcome, Claim
from kti_policy.store.tables import utcnow

from .fanout import Store
from .http_deadline import Deadline, deadline_session
from .subscriptions import Subscription

log = logging.getLogger(__name__)

DEFAULT_SCHEDULE: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
MAX_RETRY_AFTER = 86400.0
ERROR_SNIPPET = 200


def parse_schedule(text: str | None) -> tuple[float, ...]:
    """``"5,300,1800"`` -> delays in seconds; empty means no retries (one attempt)."""
    if text is None or str(text).strip() == "":
        return DEFAULT_SCHEDULE if text is None else ()
    try:
        delays = tuple(float(part) for part in str(text).split(",") if part.strip())
    except ValueError:
        raise ConfigError(
            f"KTI_HOOK_RETRY_SCHEDULE: {text!r} is not a comma-separated list of seconds"
        ) from None
    if any(d < 0 or math.isnan(d) or math.isinf(d) for d in delays):
        raise ConfigError("KTI_HOOK_RETRY_SCHEDULE: delays must be finite and not negative")
    return delays


def scrub_subject_id(text: str, body: bytes, truncated: bool = False) -> str:
    """``text`` (a receiver's answer) without the clear subject id of ``body``: receivers often echo
    it in error messages, and this text goes to the attempt log in the database and to the log.
    When ``text`` was cut short, a trailing start of the id is dropped too."""
    try:
        subject = json.loads(body)["data"]["subject_id"]
    except (ValueError, KeyError, TypeError):
        return text
    if not isinstance(subject, str) or not subject:
        return text
    for form in dict.fromkeys((subject, json.dumps(subject)[1:-1])):
        text = text.replace(form, "<subject_id>")
        if truncated:
            for n in range(len(form) - 1, 0, -1):
                if text.endswith(form[:n]):
                    text = text[:-n] + "..."
                    break
    return text


def signed_headers(sub: Subscription, msg_id: str, body: bytes, now: datetime) -> dict[str, str]:
    """The Standard Webhooks headers for one attempt (signature over id.timestamp.body)."""
    assert sub.secret is not None
    signature = Webhook(sub.secret).sign(msg_id=msg_id, timestamp=now, data=body.decode("utf-8"))
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
        "user-agent": "kti-policy-webhooks/1",
    }


class Worker:
    """Sends due outbox deliveries. Several workers (threads or processes) may share a database."""

    def __init__(
        self,
        store: Store,
        *,
        subscriptions: Sequence[Subscription] | None = None,
        schedule: Sequence[float] = DEFAULT_SCHEDULE,
        jitter: float = 0.2,
        batch_size: int = 32,
        concurrency: int = 8,
        timeout: float = 15.0,
        lease_seconds: float | None = None,
        poll_interval: float = 1.0,
        scheduler: Any = None,
        per_subscription: int | None = None,
    ) -> None:
        self.store = store
        # the obligations register's reminder pass (register_scheduler.ObligationScheduler)
        self.scheduler = scheduler
        self._last_scan = -math.inf
        subs = store.subscriptions if subscriptions is None else subscriptions
        self.subscriptions = {s.id: s for s in subs if s.secret}
        self.schedule = tuple(schedule)
        self.jitter = max(0.0, min(float(jitter), 0.9))
        self.batch_size = max(1, batch_size)
        self.concurrency = max(1, concurrency)
        # run_forever: at most this many deliveries of one subscription in flight, so that a
        # receiver that hangs holds at most half the slots while there are other subscribers
        if per_subscription is None:
            per_subscription = max(1, self.concurrency // 2) if len(self.subscriptions) > 1 else self.concurrency
        self.per_subscription = max(1, per_subscription)
        self.timeout = timeout
        # rounds of ``concurrency`` attempts a claimed row may wait through: its lease covers them
        self.rounds = math.ceil(self.batch_size / self.concurrency)
        self.lease_seconds = lease_seconds or (timeout + 5) * self.rounds + 30
        self.poll_interval = poll_interval
        self._local = threading.local()
        self._pool: ThreadPoolExecutor | None = None
        self._wake = threading.Event()
        self.stop_event = threading.Event()
        store.add_outbox_listener(self._wake.set)

    @classmethod
    def from_config(cls, store: Store, config: Mapping[str, Any]) -> Worker:
        """``KTI_HOOK_RETRY_SCHEDULE``, ``KTI_HOOK_RETRY_JITTER``, ``KTI_HOOK_TIMEOUT``,
        ``KTI_HOOK_CONCURRENCY``, ``KTI_HOOK_CONCURRENCY_PER_SUBSCRIPTION`` from the mapping
        (defaults per CONTRACT section 4)."""
        jitter = number_setting("KTI_HOOK_RETRY_JITTER", config.get("KTI_HOOK_RETRY_JITTER", 0.2), float)
        timeout = number_setting("KTI_HOOK_TIMEOUT", config.get("KTI_HOOK_TIMEOUT", 15), float)
        concurrency = number_setting("KTI_HOOK_CONCURRENCY", config.get("KTI_HOOK_CONCURRENCY", 8), int)
        per_sub = config.get("KTI_HOOK_CONCURRENCY_PER_SUBSCRIPTION")
        per_subscription = (
            None if per_sub in (None, "") else number_setting("KTI_HOOK_CONCURRENCY_PER_SUBSCRIPTION", per_sub, int)
        )
        from kti_policy.register.scheduler import ObligationScheduler

        return cls(
            store,
            schedule=parse_schedule(config.get("KTI_HOOK_RETRY_SCHEDULE")),
            jitter=jitter,
            timeout=timeout,
            concurrency=concurrency,
            per_subscription=per_subscription,
            scheduler=ObligationScheduler.from_config(store, config),
        )

    # -- one attempt

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = deadline_session()  # connections a Deadline can cut (see attempt)
            session.trust_env = False  # no proxies from the environment for webhook targets
            self._local.session = session
        return session

    def _delay(self, failures: int, retry_after: float | None) -> float | None:
        """Seconds until the next attempt after ``failures`` failed ones; None means dead."""
        if failures > len(self.schedule):
            return None
        delay = self.schedule[failures - 1]
        if self.jitter:
            delay *= random.uniform(1 - self.jitter, 1 + self.jitter)
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
        return delay

    def send(self, claim: Claim) -> bool:
        """Attempt one claimed delivery and record the outcome; True when delivered."""
        outcome = self.attempt(claim)
        self.store.complete_attempts([outcome])
        return outcome.delivered

    def attempt(self, claim: Claim) -> AttemptOutcome:
        """Send one claimed delivery (no database work): the outcome to record."""
        sub = self.subscriptions.get(claim.subscription_id)
        now = utcnow()
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        retry_after: float | None = None
        if sub is None:
            error = (
                f"subscription {claim.subscription_id!r} is not configured in this worker "
                "(removed from KTI_HOOKS_DIR, or its secret variable is unset)"
            )
        elif not claim.body:
            error = (
                "the stored webhook body is missing or cannot be opened (was KTI_PSEUDONYM_KEY "
                "changed since the event was recorded?)"
            )
        else:
            deadline = Deadline(self.timeout)  # per attempt: the timeout below is per read
            try:
                with deadline:
                    resp = self._session().post(
                        sub.url,
                        data=claim.body,
                        headers=signed_headers(sub, claim.event_id, claim.body, now),
                        timeout=self.timeout,
                        allow_redirects=False,
                        stream=True,
                    )
                    with resp:
                        status = resp.status_code
                        if not 200 <= status < 300:
                            snippet = resp.raw.read(ERROR_SNIPPET, decode_content=True) or b""
                            text = scrub_subject_id(
                                snippet.decode("utf-8", "replace").strip(),
                                claim.body,
                                truncated=len(snippet) >= ERROR_SNIPPET,
                            )
                            error = f"HTTP {status}" + (f": {text}" if text else "")
                            retry_after = parse_retry_after(resp.headers.get("Retry-After"), utcnow())
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                if deadline.expired:
                    error = f"Timeout: no complete answer within {self.timeout:g} s"
                    status = None
                else:
                    error = f"{type(exc).__name__}: {exc}"[:500]
            if deadline.expired and error is None:
                # cut mid-answer: what arrived may even parse as a 2xx; it is not an answer
                error, status = f"Timeout: no complete answer within {self.timeout:g} s", None
        duration = time.perf_counter() - started
        metrics.DELIVERY_SECONDS.observe(duration)
        delivered = error is None
        next_at: datetime | None = None
        if not delivered:
            delay = self._delay(claim.attempts + 1, retry_after)
            if delay is not None:
                next_at = utcnow() + timedelta(seconds=delay)
        result = AttemptOutcome(claim, now, duration * 1000, status, error, delivered, next_at)
        metrics.DELIVERIES.labels(subscription=claim.subscription_id, outcome=result.outcome).inc()
        if not delivered:
            log.info(
                "delivery %s to %s failed (%s): %s",
                claim.id,
                claim.subscription_id,
                result.outcome,
                error,
            )
        return result

    # -- loops

    def _round(self) -> tuple[int, int]:
        claims = self.store.claim_due(self.batch_size, self.lease_seconds)
        if not claims:
            return 0, 0
        if self.concurrency == 1 or len(claims) == 1:
            outcomes = [self.attempt(c) for c in claims]
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="kti-deliver")
            outcomes = list(self._pool.map(self.attempt, claims))
        # one transaction for the round: a worker killed before it leaves the leases to expire
        # and the receivers see the same webhook-id again (at least once)
        self.store.complete_attempts(outcomes)
        return len(claims), sum(o.delivered for o in outcomes)

    def scan_obligations(self, force: bool = False) -> None:
        """The register's reminder pass, at most once per its interval (``force``: now)."""
        if self.scheduler is None:
            return
        if not force and time.monotonic() - self._last_scan < self.scheduler.interval:
            return
        self._last_scan = time.monotonic()
        self.scheduler.run_once()

    def run_once(self) -> int:
        """One round: claim what is due now (up to ``batch_size``), send it; the number delivered."""
        return self._round()[1]

    def drain(self) -> int:
        """Rounds until nothing is due now; the number delivered."""
        total = 0
        while True:
            claimed, sent = self._round()
            total += sent
            if not claimed:
                return total

    def run_forever(self, stop_event: threading.Event | None = None) -> None:
        """Deliver until ``stop_event`` is set; database or network trouble never ends the loop.

        Unlike ``run_once``'s rounds, which wait for their slowest attempt, the slots are kept
        full (``_Dispatcher``): a sender that ends an attempt takes the next held delivery, the
        loop claims more as the held ones run low and records outcomes in batches, and at most
        ``per_subscription`` of one subscription are sent at once. A receiver that hangs until the
        timeout then holds its own share of the slots only; with rounds it held up every round,
        and the whole outbox moved one round per timeout.
        """
        stop = stop_event or self.stop_event
        hand = _Dispatcher(self, stop)
        failures = 0
        last_gauges = 0.0
        try:
            while not stop.is_set():
                self._wake.clear()  # before looking: an attempt ending from here on wakes the wait
                try:
                    self.scan_obligations()
                    moved = hand.record()
                    moved += hand.claim()
                    moved += hand.start()
                    failures = 0
                    if time.monotonic() - last_gauges > 15:
                        metrics.update_outbox_gauges(self.store)
                        last_gauges = time.monotonic()
                except Exception:  # keep delivering after a transient database error
                    failures += 1
                    log.exception("webhook delivery round failed")
                    stop.wait(min(30.0, 0.5 * 2**failures))
                    continue
                if not moved:
                    self._wake.wait(hand.wait_hint(self.poll_interval))
        finally:
            hand.finish()
            self.close()

    def start_background(self) -> threading.Thread:
        """A daemon thread running ``run_forever(self.stop_event)``; ``stop()`` ends it."""
        thread = threading.Thread(
            target=self.run_forever, args=(self.stop_event,), name="kti-webhooks", daemon=True
        )
        thread.start()
        return thread

    def stop(self) -> None:
        self.stop_event.set()
        self._wake.set()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


RECORD_DELAY = 0.05  # seconds an ended attempt may wait to be recorded with others (one transaction)


class _Dispatcher:
    """``run_forever``'s deliveries in hand: claimed in batches, sent by up to ``concurrency``
    runners that each take the next one as soon as theirs ends, recorded in batches.

    Claims are leased rows; up to ``batch_size`` are held, at most ``per_subscription`` of one
    subscription sent at once (and at most ``rounds`` times that held, so that a held row waits no
    more rounds than ``lease_seconds`` allows for). A row whose subscription's share is taken waits
    in hand without holding a runner. Ended attempts are recorded together when ``concurrency`` of
    them have ended, after ``RECORD_DELAY``, or when no runner is left: a transaction per attempt,
    and runners idle until the loop refilled their slot, cost a fifth to a third of the deliveries
    per second (bench/events_bench.py). Outcomes the database refuses are kept for the next pass
    (the leases outlast that); an attempt that raised is dropped with a log line, its lease expires
    and the row is sent again.
    """

    def __init__(self, worker: Worker, stop: threading.Event) -> None:
        self.worker = worker
        self.stop = stop  # once set, no sender starts another attempt
        self.held_per_subscription = worker.per_subscription * worker.rounds
        self.lock = threading.Lock()
        self.waiting: list[Claim] = []  # claimed, not yet sent, oldest first
        self.sending: Counter[str] = Counter()  # per subscription
        self.runners: set[Future[None]] = set()
        self.ended: list[AttemptOutcome] = []
        self.first_ended = 0.0

    # -- the runners (the pool's threads)

    def _may_send(self, claim: Claim) -> bool:
        """Whether the claim's subscription may send one more now (under the lock)."""
        return self.sending[claim.subscription_id] < self.worker.per_subscription

    def _startable(self) -> int:
        """How many held claims may be sent now (under the lock)."""
        return sum(1 for c in self.waiting if self._may_send(c))

    def _next(self) -> Claim | None:
        """The oldest held claim whose subscription may send one more (under the lock)."""
        if self.stop.is_set():
            return None
        for i, claim in enumerate(self.waiting):
            if self._may_send(claim):
                del self.waiting[i]
                self.sending[claim.subscription_id] += 1
                return claim
        return None

    def _run(self) -> None:
        """Send held claims one after another until none may start."""
        w = self.worker
        with self.lock:
            claim = self._next()
        while claim is not None:
            try:
                outcome: AttemptOutcome | None = w.attempt(claim)
            except Exception:
                log.exception("delivery %s: the attempt failed; its lease will expire", claim.id)
                outcome = None
            with self.lock:
                self.sending[claim.subscription_id] -= 1
                if outcome is not None:
                    if not self.ended:
                        self.first_ended = time.monotonic()
                    self.ended.append(outcome)
                claim = self._next()
                wake = (
                    claim is None
                    or len(self.ended) in (1, w.concurrency)
                    or len(self.waiting) < w.concurrency
                )
            if wake:
                w._wake.set()

    # -- the loop's side

    def claim(self) -> int:
        """Claim due deliveries when fewer than ``concurrency`` held ones could start now."""
        w = self.worker
        with self.lock:
            startable = self._startable()
            held = Counter(c.subscription_id for c in self.waiting) + self.sending  # waiting and being sent
        room = w.batch_size - held.total()
        if startable >= w.concurrency or room <= 0:
            return 0
        claims = w.store.claim_due(room, w.lease_seconds, held, self.held_per_subscription)
        with self.lock:
            self.waiting.extend(claims)
        return len(claims)

    def start(self) -> int:
        """Start runners for the free slots while held claims may start; how many started."""
        w = self.worker
        self.runners = {f for f in self.runners if not f.done()}
        with self.lock:
            startable = self._startable()
        new = min(w.concurrency - len(self.runners), startable)
        if new <= 0:
            return 0
        if w._pool is None:
            w._pool = ThreadPoolExecutor(w.concurrency, thread_name_prefix="kti-deliver")
        for _ in range(new):
            self.runners.add(w._pool.submit(self._run))
        return new

    def record(self, force: bool = False) -> int:
        """Record the ended attempts' outcomes in one transaction when it is time to; how many."""
        with self.lock:
            if not self.ended:
                return 0
            due = (
                force
                or len(self.ended) >= self.worker.concurrency
                or time.monotonic() - self.first_ended >= RECORD_DELAY
                or all(f.done() for f in self.runners)
            )
            if not due:
                return 0
            ended, self.ended = self.ended, []
        try:
            self.worker.store.complete_attempts(ended)
        except BaseException:
            with self.lock:  # kept for the next pass
                self.ended[:0] = ended
            raise
        return len(ended)

    def wait_hint(self, poll: float) -> float:
        """How long the loop may sleep: the poll interval, or until the ended attempts are due."""
        with self.lock:
            if not self.ended:
                return poll
            return max(0.0, min(poll, RECORD_DELAY - (time.monotonic() - self.first_ended)))

    def finish(self) -> None:
        """On stop: the runners end the attempts under way and take no more; record them, and give
        the held rows not sent back (due at once for the next worker, not when their leases end)."""
        wait(list(self.runners))
        try:
            self.record(force=True)
            self.worker.store.release_claims(self.waiting)
            self.waiting = []
        except Exception:
            log.exception("recording the last webhook attempts failed; their leases will expire")


@click.command("deliver")
@click.option("--once", is_flag=True, help="Send every delivery due now, then exit.")
def deliver_command(once: bool) -> None:
    """Deliver outgoing webhooks from the outbox (a separate process beside the web workers).

    Reads KTI_DATABASE_URL, KTI_HOOKS_DIR, KTI_PSEUDONYM_KEY, KTI_HOOK_RETRY_SCHEDULE and the
    secret variables the subscriptions name from the environment. Stops cleanly on SIGTERM/SIGINT.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    config = dict(os.environ)
    try:
        store = Store.from_config(config)
        worker = Worker.from_config(store, config)
    except KtiError as exc:
        raise click.ClickException(str(exc)) from None
    if not worker.subscriptions:
        log.warning("no active webhook subscriptions: nothing will be delivered")
    try:
        if once:
            worker.scan_obligations(force=True)
            click.echo(f"delivered {worker.drain()}")
            return
        stop = threading.Event()

        def _stop(signum: int, _frame: Any) -> None:
            log.info("signal %s: finishing the attempts under way", signum)
            worker.stop()
            stop.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        log.info("delivering webhooks for %d subscription(s)", len(worker.subscriptions))
        worker.run_forever(stop)
    finally:
        worker.close()
        store.close()
