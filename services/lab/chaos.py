"""The fault suite: whole cases on a 3-node cluster while brokers, services and partners fail.

Every service runs as its own `hub run` process, so that a SIGKILL is a real one; the partner
simulators run here and keep what they received, which is what the counts are made from.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from tenacity import AsyncRetrying, retry_if_exception_type

from dispatch.partners import load_partners
from hub.bootstrap import Adapter, Declaration, all_topics, declarations
from hub.core.connection import kafka_security
from hub.core.envelope import Envelope
from hub.core.errors import UndecodableError
from hub.core.outbound import event_record
from hub.core.service import KafkaSink
from hub.core.settings import HubSettings
from hub.core.store.postgres import scratch_database
from hub.core.topics import (
    CASES,
    NOTIFICATION_EVENTS,
    NOTIFICATION_REQUESTS,
    STOREFRONT_REQUESTS,
    apply_topics,
    courier_events_topic,
    courier_orders_topic,
)
from hub.messages import CATALOGUE
from hub.messages.cases import (
    CaseCancelledV1,
    CaseExceptionRaisedV1,
    CaseRejectedV1,
    PickupAcceptedV1,
)
from hub.messages.courier import CourierOrderAcceptedV1, PickupCancelRequestedV1
from hub.messages.repair import (
    CaseClosedV1,
    NotificationRequestedV1,
    NotificationSentV1,
    RefundRequestedV1,
)
from hub.ops.kafka_io import TopicReader
from intake.domain import case_id_for
from lab.harness.kafka import LocalKafka, free_port
from lab.orphans import die_with_parent
from lab.samples import sample_request_v2
from lab.simulators.insurer import InsurerKnobs, InsurerSimulator
from lab.simulators.kafka_courier import CourierKnobs, KafkaCourierSimulator
from lab.simulators.kafka_partner import SEND_BACKOFF
from lab.simulators.notification_sinks import HttpGatewaySink, SinkKnobs, SmtpSink
from lab.simulators.repair_center import HttpRepairCenterSimulator, RepairCenterSimulator
from lab.simulators.sf_courier import SfCourierSimulator, SfKnobs

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from aiokafka import TopicPartition

    from hub.core.store.base import KafkaRecord

log = structlog.get_logger(__name__)

HUB = Path(sys.executable).with_name("hub")
SF_PARTNER_ID = "HUB-CHAOS"
SF_CHECKWORD = "chaos-checkword-not-a-secret"
CENTER_SECRET = "chaos-center-secret-not-a-secret"  # noqa: S105 - the simulated center's
INSURER_SECRET = "chaos-insurer-key-not-a-secret"  # noqa: S105 - the simulated insurers'
HTTP_CENTER = "sh"
TERMINAL = {CaseClosedV1.ce_type(), CaseRejectedV1.ce_type(), CaseCancelledV1.ce_type()}
EXCEPTION = CaseExceptionRaisedV1.ce_type()
# Gateways own the webhooks partners push to; partners re-push for seconds, not for a restart.
UNKILLED = frozenset({Adapter.COURIER_API, Adapter.CENTER_API})
RETRY_TIERS = ("2s", "5s")
SETTLE_S = 3.0
QUIET_S = 30.0
"""With only cases raised to an operator left open, how long nothing may move before the end."""
CAUGHT_UP_LAG = 200
"""Records behind, over every group, that count as caught up after a broker restart."""
LAG_EVERY_S = 1.0
"""Quiet time, once every planned notification was sent, before the counting."""


@dataclass(frozen=True, slots=True)
class ChaosPlan:
    """How many cases, how fast, and how much goes wrong meanwhile."""

    cases: int = 10_000
    rate_per_s: float = 100.0
    partner_failure_rate: float = 0.3
    kill_every_s: float = 15.0
    broker_down_s: float = 15.0
    broker_stops: int = 2
    """Broker nodes stopped and restarted one after the other, a different node each time."""
    timeout_s: float = 3600.0
    seed: int = 7
    instances: int = 1
    """Processes per service group; more than one share a PostgreSQL state store."""
    postgres_server_url: str | None = None
    """Where to create the run's own database, needed for more than one instance."""


@dataclass
class ChaosReport:
    """What the counts say once every case has ended (or time ran out)."""

    cases: int
    seconds: float = 0.0
    kills: Counter[str] = field(default_factory=Counter)
    broker_restarts: int = 0
    ended: Counter[str] = field(default_factory=Counter)
    accepted_pickups: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    couriers_of_leg: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    """Per case and leg, the couriers that accepted an order of it that was never withdrawn."""
    refunds: dict[str, set[str]] = field(default_factory=dict)
    notifications: Counter[str] = field(default_factory=Counter)
    """Distinct `notifications.sent` events per dedupe key (case, milestone, channel)."""
    notifications_planned: set[str] = field(default_factory=set)
    """Dedupe keys notify asked notify-sender to deliver."""
    gateway_deliveries: Counter[str] = field(default_factory=Counter)
    """Messages the SMS and push gateways delivered, by dedupe key."""
    partner_calls: Counter[str] = field(default_factory=Counter)
    email_deliveries: Counter[str] = field(default_factory=Counter)
    offered_seconds: float = 0.0
    """How long offering every case took (the rate achieved is cases over this)."""
    lag: list[tuple[float, int]] = field(default_factory=list)
    """(monotonic time, records every group still has to read), about once a second."""
    brokers_back_at: list[float] = field(default_factory=list)
    unended: dict[str, str] = field(default_factory=dict)
    """Cases that never ended: the last case event each one got (none if not even opened)."""
    exceptions: dict[str, str] = field(default_factory=dict)
    """Of the cases that never ended, those raised to an operator: code and reason."""
    lag_by_group: dict[str, int] = field(default_factory=dict)
    """The last lag reading, per group that was behind at all."""
    unended_log: list[str] = field(default_factory=list)
    """The services' last log lines about the first few cases that never ended."""
    unended_history: dict[str, list[str]] = field(default_factory=dict)
    """For the first few cases that never ended, their last records on the topics the ledger
    reads (case events, courier orders and answers), oldest first: what they wait for."""
    slowest_case_s: float = 0.0
    """From offering a case to its end, the longest any case took."""
    dead_letters: Counter[str] = field(default_factory=Counter)
    """Records on each dead-letter topic at the end (a fault the hub could not absorb)."""

    @property
    def max_lag(self) -> int:
        """The most records the hub's groups were behind at one time."""
        return max((lag for _, lag in self.lag), default=0)

    def catch_up_seconds(self, threshold: int) -> list[float | None]:
        """For each broker restart, how long until the lag was back under `threshold`."""
        return [
            next((at - back for at, lag in self.lag if at >= back and lag <= threshold), None)
            for back in self.brokers_back_at
        ]

    @property
    def for_a_person(self) -> int:
        """Cases that never ended and were raised to an operator (they stay in exception)."""
        return len(self.exceptions)

    @property
    def lost(self) -> int:
        """Cases that neither reached closed, rejected or cancelled nor went to an operator."""
        return self.cases - sum(self.ended.values()) - self.for_a_person

    @property
    def duplicate_pickups(self) -> int:
        """Legs with more than one accepted pickup order."""
        return sum(len(ids) - 1 for ids in self.accepted_pickups.values() if len(ids) > 1)

    @property
    def legs_with_two_couriers(self) -> int:
        """Legs two couriers took (each accepted an order, neither was withdrawn): two come."""
        return sum(1 for couriers in self.couriers_of_leg.values() if len(couriers) > 1)

    @property
    def duplicate_refunds(self) -> int:
        """Cases refunded more than once."""
        return sum(len(ids) - 1 for ids in self.refunds.values() if len(ids) > 1)

    @property
    def undelivered_notifications(self) -> int:
        """Planned messages no provider accepted."""
        return len(self.notifications_planned - set(self.notifications))

    @property
    def duplicate_notifications(self) -> int:
        """Milestones told more than once on one channel (hub events, gateway deliveries)."""
        repeated = [*self.notifications.values(), *self.gateway_deliveries.values()]
        return sum(count - 1 for count in repeated if count > 1)

    def lines(self) -> list[str]:
        """The report as text, one figure a line."""
        return [
            f"cases                 {self.cases} in {self.seconds:.0f}s",
            f"ended                 {dict(self.ended)}",
            f"lost                  {self.lost}",
            f"for a person          {self.for_a_person} (raised to an operator, never closed)",
            (
                f"pickup legs accepted  {len(self.accepted_pickups)}, duplicated "
                f"{self.duplicate_pickups}, taken by two couriers {self.legs_with_two_couriers}"
            ),
            f"refunds               {len(self.refunds)}, duplicated {self.duplicate_refunds}",
            f"notifications         {len(self.notifications)} milestone x channel sent of "
            f"{len(self.notifications_planned)} planned, duplicated "
            + str(self.duplicate_notifications),
            "e-mails sent twice    "
            + str(sum(c - 1 for c in self.email_deliveries.values() if c > 1)),
            f"SIGKILLs              {sum(self.kills.values())} {dict(self.kills)}",
            f"broker restarts       {self.broker_restarts}",
            f"rate offered          {self.cases / max(self.offered_seconds, 1e-9):.0f} cases/s",
            f"max consumer lag      {self.max_lag} records (every group's inputs, each second)",
            "caught up after stop  "
            + ", ".join(
                "never" if seconds is None else f"{seconds:.1f}s"
                for seconds in self.catch_up_seconds(CAUGHT_UP_LAG)
            )
            + f" (lag back under {CAUGHT_UP_LAG} records)",
            f"partner calls         {dict(self.partner_calls)} (a share of them failed on purpose)",
            *self._unended_lines(),
            f"slowest case          {self.slowest_case_s:.0f}s from its request to its end",
            f"dead letters          {sum(self.dead_letters.values())} {dict(self.dead_letters)}",
            *([f"groups behind at end  {self.lag_by_group}"] if self.lag_by_group else []),
            *(
                f"  {case} last records: {' | '.join(history)}"
                for case, history in self.unended_history.items()
            ),
            *self.unended_log,
        ]

    def _unended_lines(self) -> list[str]:
        if not self.unended:
            return []
        codes = Counter(reason.split(":", 1)[0] for reason in self.exceptions.values())
        reasons = sorted(set(self.exceptions.values()))[:UNENDED_REASONS]
        return [
            (
                f"never ended           {len(self.unended)} by last event "
                f"{dict(Counter(self.unended.values()))}"
            ),
            *([f"  in exception by code {dict(codes)}"] if codes else []),
            *(f"  reason: {reason}" for reason in reasons),
            f"  cases: {' '.join(f'{case}@{kind}' for case, kind in self.unended.items())}",
        ]


UNENDED_REASONS = 5
"""Distinct exception reasons the report quotes."""
HISTORY = 8
"""Records kept per case for the report of cases that never ended (the newest)."""


class Services:
    """`hub run` processes, `instances` per group, one per gateway (it owns a webhook port)."""

    def __init__(
        self,
        environment: dict[str, str],
        log_dir: Path,
        declared: list[Declaration],
        ports: dict[str, int],
        instances: int,
    ) -> None:
        self.environment = environment
        self.log_dir = log_dir
        self.ports = ports
        self.killable = [
            f"{d.group}#{n}"
            for d in declared
            if d.adapter not in UNKILLED
            for n in range(instances)
        ]
        self.names = [
            *self.killable,
            *(d.group for d in declared if d.adapter in UNKILLED),
        ]
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        """Start process `name` (`group#n`; its log appended to `<log_dir>/<name>.log`)."""
        group = name.partition("#")[0]
        command = [str(HUB), "run", group]
        if group in self.ports:
            command += ["--webhook-port", str(self.ports[group])]
        with (self.log_dir / f"{name}.log").open("ab") as output:
            # A runner killed outright takes its services with it (no orphans on the machine).
            self.processes[name] = subprocess.Popen(  # noqa: S603 - our own CLI
                command, env=self.environment, stdout=output, stderr=output,
                stdin=subprocess.DEVNULL,
                preexec_fn=_hub_process(),  # noqa: PLW1509 - only prctl and nice run in the child
            )  # fmt: skip

    def start_all(self) -> None:
        """Start every group."""
        for name in self.names:
            self.start(name)

    def kill_and_restart(self, name: str) -> None:
        """SIGKILL `name` and start it again on the same state."""
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait()
        self.start(name)

    def stop_all(self) -> None:
        """SIGTERM everyone, then wait (they drain in-flight messages)."""
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


class Partners:
    """Every partner simulator, failing a share of calls; they outlive the services."""

    def __init__(
        self, bootstrap: str, failure_rate: float, seed: int, ports: dict[str, int]
    ) -> None:
        table = load_partners()
        self.sf = SfCourierSimulator(
            SF_PARTNER_ID,
            SF_CHECKWORD,
            f"http://127.0.0.1:{ports['gateway-sf']}/sf/routes",
            # Some calls hang past the client's timeout: a partner answering slowly.
            SfKnobs(
                error_rate=failure_rate,
                timeout_rate=0.05,
                hang_s=3.0,
                latency_s=0.05,
                step_delay_s=0.2,
                duplicate_push_rate=0.2,
                seed=seed,
            ),
        )
        self.couriers = [
            KafkaCourierSimulator(c.code, bootstrap,
                                  CourierKnobs(reject_rate=failure_rate, step_delay_s=0.2,
                                               duplicate_push_rate=0.2, seed=seed + n))
            for n, c in enumerate(table.couriers) if c.integration == "kafka"
        ]  # fmt: skip
        self.center = RepairCenterSimulator(bootstrap)
        self.http_center = HttpRepairCenterSimulator(webhook_secret=CENTER_SECRET)
        self.http_center.webhook_url = (
            f"http://127.0.0.1:{ports[f'gateway-center-{HTTP_CENTER}']}/centers/"
            f"{HTTP_CENTER}/reports"
        )
        self.sms = HttpGatewaySink(SinkKnobs(error_rate=failure_rate, seed=seed))
        self.push = HttpGatewaySink(SinkKnobs(error_rate=failure_rate, seed=seed + 1))
        self.smtp = SmtpSink()
        self.insurers = [
            InsurerSimulator(insurer.code, INSURER_SECRET,
                             InsurerKnobs(error_rate=failure_rate, seed=seed + n))
            for n, insurer in enumerate(table.insurers)
        ]  # fmt: skip
        self._insurer_variables = [(i.api_url_env, i.secret_env) for i in table.insurers]

    @property
    def all(self) -> list[KafkaCourierSimulator | RepairCenterSimulator | SfCourierSimulator
                        | HttpRepairCenterSimulator | HttpGatewaySink | SmtpSink
                        | InsurerSimulator]:  # fmt: skip
        """Every simulator, in start order."""
        return [self.sf, *self.couriers, self.center, self.http_center, self.sms, self.push,
                self.smtp, *self.insurers]  # fmt: skip

    def environment(self) -> dict[str, str]:
        """What the services need to reach the simulators."""
        return {
            "HUB_COURIER_SF_URL": self.sf.url,
            "HUB_COURIER_SF_PARTNER_ID": SF_PARTNER_ID,
            "HUB_COURIER_SF_CHECKWORD": SF_CHECKWORD,
            "HUB_CENTER_SH_URL": self.http_center.url,
            "HUB_CENTER_SH_WEBHOOK_SECRET": CENTER_SECRET,
            "HUB_SMS_GATEWAY_URL": self.sms.url,
            "HUB_PUSH_GATEWAY_URL": self.push.url,
            "HUB_SMTP_HOST": "127.0.0.1",
            "HUB_SMTP_PORT": str(self.smtp.port),
            **{
                name: value
                for (url, secret), insurer in zip(
                    self._insurer_variables, self.insurers, strict=True
                )
                for name, value in ((url, insurer.url), (secret, INSURER_SECRET))
            },
        }


def service_environment(
    partners: Partners, bootstrap: str, state_dir: Path, **extra: str
) -> dict[str, str]:
    """What every `hub run` process of a lab run gets: this one's, less any HUB_ or KAFKA_."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "KAFKA_"))},
        **partners.environment(),
        "HUB_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "HUB_STATE_DIR": str(state_dir),
        "HUB_RETRY_TIERS": ",".join(RETRY_TIERS),
        "HUB_LOG_FORMAT": "json",
        "HUB_LOG_LEVEL": "WARNING",
        **extra,
    }


class Ledger:
    """Follows the case and notification topics and keeps what the report counts."""

    def __init__(self, report: ChaosReport, couriers: Iterable[str] = ()) -> None:
        self.report = report
        self.case_ids: set[str] = set()
        self._courier_of_topic = {
            topic: code
            for code in couriers
            for topic in (courier_events_topic(code), courier_orders_topic(code))
        }
        self._taken: dict[tuple[str, str], set[tuple[str, str]]] = {}
        """Per case and leg, (courier, order id) of every acceptance the couriers sent."""
        self._withdrawn: set[tuple[str, str]] = set()
        self._sent: dict[str, set[str]] = {}
        self._ended: dict[str, str] = {}
        self._last_case_event: dict[str, str] = {}
        self._exceptions: dict[str, str] = {}
        self._history: dict[str, deque[tuple[str, str, float]]] = {}
        """Per case, its last records on the ledger's topics: topic, ce_type, seconds in (text
        only for the few the report quotes: the ledger reads every record of the run)."""
        self._started = time.monotonic()
        self.offered_at: dict[str, float] = {}
        self._took: dict[str, float] = {}
        self.all_ended = asyncio.Event()
        """Set once every published case has reached a terminal state."""
        self._raised: set[str] = set()
        """Cases raised to an operator and not ended since."""
        self.last_news = time.monotonic()
        """When a notification, a case end or a case raised to an operator last arrived."""

    @property
    def all_settled(self) -> bool:
        """Whether every case has ended or waits for an operator (`last_news` says since when)."""
        return len(self._ended) + len(self._raised) == self.report.cases

    @property
    def topics(self) -> tuple[str, ...]:
        """What the ledger reads: cases, notifications, and each courier's orders and answers."""
        return (*LEDGER_TOPICS, *self._courier_of_topic)

    def offer(self, case_id: str) -> None:
        """A case's request is about to be sent: its clock starts."""
        self.case_ids.add(case_id)
        self.offered_at.setdefault(case_id, time.monotonic())

    @property
    def undelivered(self) -> int:
        """Planned notifications not sent (yet)."""
        return len(self.report.notifications_planned - self._sent.keys())

    def take(self, record: KafkaRecord) -> None:
        """Account for one record (repeats of one event id count once)."""
        try:
            envelope = Envelope.from_headers(record.headers)
            event = CATALOGUE.decode(envelope.type, record.value or b"")
        except (UndecodableError, ValueError):
            return
        report = self.report
        if (courier := self._courier_of_topic.get(record.topic)) is not None:
            self._take_courier_record(courier, event)
        elif isinstance(event, PickupAcceptedV1):
            report.accepted_pickups.setdefault((event.case_id, event.leg), set()).add(envelope.id)
        elif isinstance(event, CaseExceptionRaisedV1):
            self._exceptions[event.case_id] = f"{event.code}: {event.reason}"
        elif isinstance(event, RefundRequestedV1):
            report.refunds.setdefault(event.case_id, set()).add(envelope.id)
        elif isinstance(event, NotificationRequestedV1):
            report.notifications_planned.add(event.dedupe_key)
            self.last_news = time.monotonic()
        elif isinstance(event, NotificationSentV1):
            self._sent.setdefault(event.dedupe_key, set()).add(envelope.id)
            self.last_news = time.monotonic()
        case_id = str(getattr(event, "case_id", "") or envelope.subject or "")
        if case_id in self.case_ids:
            seen = (record.topic, envelope.type, time.monotonic() - self._started)
            self._history.setdefault(case_id, deque(maxlen=HISTORY)).append(seen)
        if envelope.subject in self.case_ids:
            self._take_case_event(record.topic, envelope.subject or "", envelope.type)

    def _take_case_event(self, topic: str, case: str, ce_type: str) -> None:
        """The last event of a case, and its end."""
        if topic == CASES:
            self._last_case_event[case] = ce_type
            # The tracker keeps a raised case in exception until it closes, whatever comes
            # after (late tracking of an order withdrawn meanwhile): it is an operator's.
            if ce_type == EXCEPTION and case not in self._ended:
                self._raised.add(case)
                self.last_news = time.monotonic()
        if ce_type in TERMINAL:
            self._raised.discard(case)
            self._ended[case] = ce_type.split(".")[2]
            self._took.setdefault(case, time.monotonic() - self.offered_at.get(case, 0.0))
            self.last_news = time.monotonic()
            if len(self._ended) == self.report.cases:
                self.all_ended.set()

    def _take_courier_record(self, courier: str, event: object) -> None:
        """A courier's acceptance, or the hub withdrawing an order from it."""
        if isinstance(event, CourierOrderAcceptedV1):
            leg = event.order_id.rsplit("-", 2)[-2]
            self._taken.setdefault((event.case_id, leg), set()).add((courier, event.order_id))
        elif isinstance(event, PickupCancelRequestedV1):
            self._withdrawn.add((courier, event.order_id))

    def settle(self) -> None:
        """Fold the sets into the report's counters."""
        self.report.notifications = Counter({k: len(v) for k, v in self._sent.items()})
        self.report.ended = Counter(self._ended.values())
        self.report.couriers_of_leg = {
            leg: {courier for courier, order in taken if (courier, order) not in self._withdrawn}
            for leg, taken in self._taken.items()
        }
        self.report.slowest_case_s = max(self._took.values(), default=0.0)
        self.report.unended = {
            case: self._last_case_event.get(case, "none")
            for case in sorted(self.case_ids - self._ended.keys())
        }
        # The cases left for an operator say why in their reasons; the others are shown.
        waiting = [c for c in self.report.unended if c not in self._raised]
        self.report.unended_history = {
            case: [f"{topic} {kind} @{at:.0f}s" for topic, kind, at in self._history.get(case, ())]
            for case in waiting[:LAST_WORDS_CASES]
        }
        self.report.exceptions = {
            case: self._exceptions.get(case, "?")
            for case in self.report.unended
            if case in self._raised
        }


HUB_NICENESS = 10
"""The hub's processes give the CPU first to this runner, whose simulators stand in for partners
on their own machines: at load 17 on 2 cores, starved with the rest, the SF simulator answered
in 4 to 9 s, past the gateway's 2 s timeout, and every SF order failed for the simulator's sake.
"""


def _hub_process() -> Callable[[], None]:
    """A `preexec_fn`: dies with the runner, and runs at HUB_NICENESS."""
    arm = die_with_parent()

    def prepare() -> None:
        arm()
        os.nice(HUB_NICENESS)

    return prepare


LEDGER_TOPICS = (CASES, NOTIFICATION_REQUESTS, NOTIFICATION_EVENTS)
FOLLOW_EVERY_S = 1.0
LEDGER_BATCH = 200


async def _follow(settings: HubSettings, ledger: Ledger, done: asyncio.Event) -> None:
    """Read what is new on the ledger's topics every second until `done`, then once more."""
    positions: dict[TopicPartition, int] = {}
    async with TopicReader(settings) as reader:
        while True:
            final = done.is_set()
            try:
                # Up to the end offsets of now: the last pass, after `done`, misses nothing.
                bounds = await reader.bounds(ledger.topics)
                ends = {tp: end for tp, (_, end) in bounds.items()}
                starts = {tp: positions.get(tp, 0) for tp in ends}
                async for batch in reader.scan(starts, ends, max_records=LEDGER_BATCH):
                    for record in batch:
                        ledger.take(record)
                    # The partner simulators share this event loop: thousands of records read
                    # in one go held SF's API answers past the gateway's 2 s timeout.
                    await asyncio.sleep(0)
            except KafkaError as error:
                # A node stopped on purpose: read again next pass (the ledger takes a record
                # read twice once, by its event id).
                log.info("ledger_read_retried", reason=str(error)[:200])
                await asyncio.sleep(FOLLOW_EVERY_S)
                continue
            positions.update(ends)
            if final:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout=FOLLOW_EVERY_S)


async def count_dead_letters(settings: HubSettings) -> Counter[str]:
    """Records on every dead-letter topic now, by topic (those holding any)."""
    async with TopicReader(settings) as reader:
        bounds = await reader.bounds(await reader.dead_letter_topics())
    counts: Counter[str] = Counter()
    for partition, (first, end) in bounds.items():
        if end > first:
            counts[partition.topic] += end - first
    return counts


async def offer_requests(
    settings: HubSettings, cases: int, rate_per_s: float, offered: Callable[[str], None]
) -> float:
    """Offer `cases` storefront requests at a fixed rate; the seconds it took.

    Each tenth of a second, the ones due by then; `offered` hears each case id.
    """
    sink = KafkaSink(settings, client_id="lab-storefront")
    await sink.start()
    try:
        started = time.monotonic()
        now = datetime.now(UTC)
        sent = 0
        while sent < cases:
            due = min(cases, int((time.monotonic() - started) * rate_per_s) + 1)
            batch = []
            for number in range(sent, due):
                request = sample_request_v2(number, now=now - timedelta(minutes=1))
                offered(case_id_for(request.request_id))
                batch.append(event_record(STOREFRONT_REQUESTS, request, key=request.request_id,
                                          source="urn:storefront:lab"))  # fmt: skip
            # A storefront sends again what the broker did not acknowledge (a node down):
            # the same records, so the same event ids, which intake reads once.
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(KafkaError), wait=SEND_BACKOFF, reraise=True
            ):
                with attempt:
                    await sink.send(batch)
            sent = due
            await asyncio.sleep(0.1)
        return time.monotonic() - started
    finally:
        await sink.stop()


async def _kills(
    services: Services, plan: ChaosPlan, report: ChaosReport, stop: asyncio.Event,
    say: Callable[[str], None],
) -> None:  # fmt: skip
    chooser = random.Random(plan.seed)  # noqa: S311 - picking a victim, not a secret
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=plan.kill_every_s)
        if stop.is_set():
            return
        victim = chooser.choice(services.killable)
        await asyncio.to_thread(services.kill_and_restart, victim)
        report.kills[victim] += 1
        say(f"SIGKILL {victim} (restarted)")


async def _broker_outage(
    kafka: LocalKafka, plan: ChaosPlan, report: ChaosReport, stop: asyncio.Event,
    say: Callable[[str], None],
) -> None:  # fmt: skip
    """Nodes go away one after the other while the cases are in full flow, and come back."""
    for node in [2 + n % (kafka.nodes - 1) for n in range(plan.broker_stops)]:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=plan.kill_every_s)
        if stop.is_set():
            return  # everything ended first: nothing to stop
        say(f"stopping broker node {node}")
        await asyncio.to_thread(kafka.stop_node, node)
        await asyncio.sleep(plan.broker_down_s)
        await asyncio.to_thread(kafka.start_node, node)
        report.broker_restarts += 1
        report.brokers_back_at.append(time.monotonic())
        say(f"broker node {node} is back")


async def _lag(
    admin: AIOKafkaAdminClient, ends: AIOKafkaConsumer, groups: dict[str, set[str]]
) -> dict[str, int]:
    """Records each group still has to read: end offsets less committed ones."""
    behind: dict[str, int] = {}
    for group, topics in groups.items():
        committed = await admin.list_consumer_group_offsets(group)
        mine = [tp for tp in committed if tp.topic in topics]
        last = await ends.end_offsets(mine) if mine else {}
        behind[group] = sum(max(0, last[tp] - committed[tp].offset) for tp in mine)
    return behind


def work_topics(declared: Iterable[Declaration]) -> dict[str, set[str]]:
    """Per group, the topics its lag is read on: its inputs.

    Not its timer topics or retry tiers, whose records wait by design: the tracker's SLA
    checks, due hours later, kept 60,000 records "behind" to the end of every chaos run, and
    no catch-up after a broker stop could be seen under them.
    """
    return {d.group: set(d.service.inputs) for d in declared}


async def watch_lag(
    settings: HubSettings,
    groups: dict[str, set[str]],
    readings: list[tuple[float, int]],
    done: asyncio.Event,
    latest_by_group: dict[str, int] | None = None,
) -> None:
    """Sample how far behind `groups` are on their topics, about once a second, until `done`.

    Each reading is (monotonic time, end offsets less committed ones, summed); the groups
    behind in the last one are kept in `latest_by_group`.
    """
    security = kafka_security(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, **security)
    ends = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, **security)
    await admin.start()
    await ends.start()
    try:
        while not done.is_set():
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                # Bounded: while a node is down a reading may hang; it must not hold the end.
                behind = await asyncio.wait_for(_lag(admin, ends, groups), LAG_EVERY_S * 5)
                readings.append((time.monotonic(), sum(behind.values())))
                if latest_by_group is not None:
                    latest_by_group.clear()
                    latest_by_group.update({g: n for g, n in behind.items() if n})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout=LAG_EVERY_S)
    finally:
        await ends.stop()
        await admin.close()


async def _until_settled(ledger: Ledger) -> None:
    """Until every case ended, or ended or went to an operator and nothing moved for QUIET_S.

    A case raised to an operator waits for a person, whom the run does not play: without the
    quiet spell the run would wait for such cases until its timeout.
    """
    # Polling: "settled, and for a while" is no event anyone could set.
    while not ledger.all_ended.is_set() and not (  # noqa: ASYNC110
        ledger.all_settled and time.monotonic() - ledger.last_news >= QUIET_S
    ):
        await asyncio.sleep(1.0)


async def _settle(ledger: Ledger, *, deadline: float) -> None:
    """Wait until every planned notification was sent and nothing new came for a while.

    Notify lags the cases it reports on: a send that failed waits in a retry tier, and the
    case's later messages wait behind it.
    """
    # Polling: "all sent, then nothing new for a while" is no event anyone could set.
    while time.monotonic() < deadline and (  # noqa: ASYNC110
        ledger.undelivered or time.monotonic() - ledger.last_news < SETTLE_S
    ):
        await asyncio.sleep(1.0)


LAST_WORDS = 5
"""Log lines kept per case that never ended, the newest."""
LAST_WORDS_CASES = 5
"""Cases that never ended whose log lines the report quotes (the logs are read once for all)."""


def last_words(log_dir: Path, cases: Iterable[str]) -> list[str]:
    """The last log lines naming each of `cases`, the services' logs read in name order."""
    found: dict[str, list[str]] = {case: [] for case in cases}
    for path in sorted(log_dir.glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            for case, lines in found.items():
                if case in line:
                    lines.append(f"  {path.stem}: {line[:600]}")
    return [line for lines in found.values() for line in lines[-LAST_WORDS:]]


def _account(report: ChaosReport, ledger: Ledger, partners: Partners, log_dir: Path) -> None:
    """What the ledger, the partners and the logs saw, into the report."""
    ledger.settle()
    report.unended_log = last_words(log_dir, list(report.unended)[:LAST_WORDS_CASES])
    for sink in (partners.sms, partners.push):
        report.gateway_deliveries.update(sink.delivered.keys())
    report.partner_calls.update(
        sf=sum(partners.sf.requests.values()),
        sms=partners.sms.requests,
        push=partners.push.requests,
    )
    report.email_deliveries = partners.smtp.by_message_id


async def run_chaos(plan: ChaosPlan, base_dir: Path, say: Callable[[str], None]) -> ChaosReport:
    """Run the plan on a fresh 3-node cluster under `base_dir` and count what happened."""
    if plan.instances == 1:
        return await _run(plan, base_dir, say, database_url=None)
    if plan.postgres_server_url is None:
        raise ValueError("several instances of a group share a PostgreSQL store: give its URL")
    async with scratch_database(plan.postgres_server_url, "hub_chaos") as database_url:
        return await _run(plan, base_dir, say, database_url=database_url)


async def _run(
    plan: ChaosPlan, base_dir: Path, say: Callable[[str], None], *, database_url: str | None
) -> ChaosReport:
    report = ChaosReport(cases=plan.cases)
    started = time.monotonic()
    kafka = LocalKafka(nodes=3, base_dir=base_dir / "kafka")
    await asyncio.to_thread(kafka.start)
    try:
        say(f"3-node cluster at {kafka.bootstrap_servers}")
        # The services' own settings (they get them as HUB_* variables below): same topics.
        settings = HubSettings(
            kafka_bootstrap_servers=kafka.bootstrap_servers,
            replication_factor=3,
            min_insync_replicas=2,
            retry_tiers=RETRY_TIERS,
            state_dir=str(base_dir / "state"),
        )
        await apply_topics(settings.kafka_bootstrap_servers, all_topics(settings))
        # The HTTP front door consumes nothing: the fault suite's load goes straight to Kafka.
        declared = [d for d in declarations(settings) if d.consumes]
        ports = {d.group: free_port() for d in declared if d.adapter in UNKILLED}
        partners = Partners(kafka.bootstrap_servers, plan.partner_failure_rate, plan.seed, ports)
        for partner in partners.all:
            await partner.start()
        log_dir = base_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        environment = service_environment(
            partners,
            kafka.bootstrap_servers,
            base_dir / "state",
            HUB_REPLICATION_FACTOR="3",
            HUB_MIN_INSYNC_REPLICAS="2",
            # Parks, releases and duplicates skipped: what says where a case stopped, if one does.
            HUB_LOG_LEVEL="INFO",
            **({} if database_url is None else {"HUB_DATABASE_URL": database_url}),
        )
        services = Services(environment, log_dir, declared, ports, plan.instances)
        services.start_all()
        ledger = Ledger(report, couriers=[c.code for c in load_partners().couriers])
        # The faults stop once every case has ended; the ledger reads on until the counting.
        stop, counted = asyncio.Event(), asyncio.Event()
        following = asyncio.create_task(_follow(settings, ledger, counted))
        kills = asyncio.create_task(_kills(services, plan, report, stop, say))
        outage = asyncio.create_task(_broker_outage(kafka, plan, report, stop, say))
        watching = asyncio.create_task(
            watch_lag(settings, work_topics(declared), report.lag, counted, report.lag_by_group)
        )
        try:
            report.offered_seconds = await offer_requests(
                settings, plan.cases, plan.rate_per_s, ledger.offer
            )
            say(f"published {plan.cases} requests")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_until_settled(ledger), timeout=plan.timeout_s)
            stop.set()
            await asyncio.gather(kills, outage)
            await _settle(ledger, deadline=started + plan.timeout_s)
            report.dead_letters = await count_dead_letters(settings)
        finally:
            stop.set()
            counted.set()
            await following
            await watching
            await asyncio.to_thread(services.stop_all)
            for partner in reversed(partners.all):
                await partner.stop()
        _account(report, ledger, partners, log_dir)
    finally:
        await asyncio.to_thread(kafka.stop)
    report.seconds = time.monotonic() - started
    log.info("chaos_finished", lost=report.lost, duplicate_pickups=report.duplicate_pickups)
    return report
