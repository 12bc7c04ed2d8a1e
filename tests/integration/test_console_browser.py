"""The on-call console in a real browser, over real dead letters on the real broker.

Headless Chromium from Debian's packages, driven by Selenium through /usr/bin/chromedriver
(`make browser` installs both). Every page is saved as a screenshot under
`.hub/artefacts/console/`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from kafka_io import create_topics, publish, read_records
from probe import REGISTRY, FaultPlan, ProbeDoneV1, ProbeV1, probe_service
from pydantic import SecretStr
from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from hub.console.app import create_app
from hub.console.auth import hash_password
from hub.console.server import BackgroundServer
from hub.console.settings import ConsoleSettings, Operator
from hub.core.outbound import OutRecord, event_record
from hub.core.pipeline import Outcome
from hub.core.service import ServiceRuntime
from hub.core.settings import HubSettings
from hub.core.topics import AUDIT, Subscription, dead_letter_topic
from hub.messages.ops import OpsActionAuditedV1

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from selenium.webdriver.remote.webelement import WebElement

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTEFACTS = Path(__file__).resolve().parents[2] / ".hub" / "artefacts" / "console"
PASSWORDS = {"alice": "alice-on-call", "victor": "victor-reads"}
# The kinds of failure dead-lettered, and how many of each: four fingerprint groups.
HANDLER_FAILURES = 20  # seq 0..19: the handler refuses them until the fault is fixed
SCHEMA_INVALID = 5
UNKNOWN_VERSION = 3
UNDECODABLE = 2
TOTAL = HANDLER_FAILURES + SCHEMA_INVALID + UNKNOWN_VERSION + UNDECODABLE
EDITED_SEQ = 100
WAIT_S = 30


class Browser:
    """A thin layer over the WebDriver: pages by path, waits for text, screenshots by name."""

    def __init__(self, driver: webdriver.Chrome, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url
        self.shots: list[Path] = []

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        return self.find(css).text

    def fill(self, css: str, text: str) -> None:
        field = self.find(css)
        field.clear()
        field.send_keys(text)

    def click(self, css: str) -> None:
        """Click a link or submit button and wait for the page it leads to."""
        page = self.find("html")
        self.find(css).click()
        self._wait_new_page(page)

    def back(self) -> None:
        page = self.find("html")
        self.driver.back()
        self._wait_new_page(page)

    def _wait_new_page(self, page: WebElement) -> None:
        def left(_: Any) -> bool:
            try:
                page.is_enabled()
            except WebDriverException:
                # Stale, or chromedriver's "node does not belong to the document": either way
                # the old page is gone.
                return True
            return False

        WebDriverWait(self.driver, WAIT_S).until(left)
        WebDriverWait(self.driver, WAIT_S).until(
            lambda driver: driver.execute_script("return document.readyState") == "complete"
        )

    def wait_for(self, what: str, check: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
        def ready(_: Any) -> bool:
            try:
                return check()
            except Exception:  # noqa: BLE001 - the page may be between two loads
                return False

        try:
            WebDriverWait(self.driver, timeout_s, poll_frequency=0.2).until(ready)
        except TimeoutException:
            self.shot(f"timeout-{re.sub(r'[^a-z0-9]+', '-', what.lower())}")
            raise AssertionError(
                f"timed out waiting for {what} on {self.driver.current_url}"
            ) from None

    def wait_reload(self, what: str, check: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
        """Reload the page until `check` holds (server-rendered pages show the state at load)."""

        def reloaded() -> bool:
            if check():
                return True
            self.driver.refresh()
            time.sleep(0.3)
            return check()

        self.wait_for(what, reloaded, timeout_s)

    def shot(self, name: str) -> Path:
        path = ARTEFACTS / f"{name}.png"
        assert self.driver.save_screenshot(str(path)), path
        self.shots.append(path)
        return path

    def sign_in(self, name: str) -> None:
        self.open("/login")
        self.fill("#name", name)
        self.fill("#password", PASSWORDS[name])
        self.click("#sign-in")
        self.wait_for(f"{name} signed in", lambda: self.text("#who") == name)

    def sign_out(self) -> None:
        self.click("header form button")
        self.wait_for("the sign-in page", lambda: "/login" in self.driver.current_url)

    def cookies(self) -> dict[str, str]:
        return {c["name"]: c["value"] for c in self.driver.get_cookies()}

    def csrf(self) -> str:
        value = self.find("header input[name=csrf]").get_attribute("value")
        assert value
        return value


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    """Debian's Chromium, headless, with a fresh profile and nothing that reaches the network."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("Chromium or chromedriver is missing: run `make browser` (make test does)")
    os.environ["SE_OFFLINE"] = "true"  # selenium-manager must never try to download a driver
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    chrome = webdriver.Chrome(service=DriverService(str(CHROMEDRIVER)), options=options)
    chrome.set_page_load_timeout(60)
    try:
        yield chrome
    finally:
        chrome.quit()


def probe_records(topic: str, unique: str) -> list[OutRecord]:
    """Records of four kinds: handler failures, schema-invalid, unknown version, undecodable."""
    records: list[OutRecord] = []

    def probe(seq: int) -> OutRecord:
        return event_record(
            topic,
            ProbeV1(seq=seq),
            key=f"case-{seq}",
            source="urn:test",
            event_id=f"{unique}-{seq}",
        )

    records += [probe(seq) for seq in range(HANDLER_FAILURES)]
    for n in range(SCHEMA_INVALID):
        good = probe(200 + n)
        records.append(OutRecord(topic, good.key, b'{"seq": "not a number"}', good.headers))
    for n in range(UNKNOWN_VERSION):
        good = probe(300 + n)
        headers = tuple(
            (name, b"test.probe.v9" if name == "ce_type" else value) for name, value in good.headers
        )
        records.append(OutRecord(topic, good.key, good.value, headers))
    for n in range(UNDECODABLE):
        good = probe(400 + n)
        records.append(OutRecord(topic, good.key, b"\xff\xfe not json", good.headers))
    return records


class Scene:
    """A probe group with dead letters of every kind, and the console serving them."""

    def __init__(self, settings: HubSettings, unique: str) -> None:
        self.settings = settings
        self.group = f"console-{unique}"
        self.input = f"test.console-in.{unique}"
        self.output = f"test.console-done.{unique}"
        self.plan = FaultPlan(permanent=set(range(HANDLER_FAILURES)))
        self.service = probe_service(self.group, self.input, self.output, self.plan)
        self.dlq = dead_letter_topic(self.input, self.group)
        self.runtime = ServiceRuntime(self.service, settings, registry=REGISTRY)
        config = ConsoleSettings.model_validate(
            {
                "operators": {
                    "alice": Operator(
                        password_hash=SecretStr(hash_password(PASSWORDS["alice"])), role="operator"
                    ),
                    "victor": Operator(
                        password_hash=SecretStr(hash_password(PASSWORDS["victor"])), role="viewer"
                    ),
                },
                "refresh_s": 0.5,
            }
        )
        self.server = BackgroundServer(create_app(settings, config, registry=REGISTRY))


@pytest.fixture(scope="module")
async def scene(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Scene]:
    unique = os.urandom(5).hex()
    settings = HubSettings.model_validate(
        {
            "kafka_bootstrap_servers": kafka_bootstrap,
            "state_dir": str(tmp_path_factory.mktemp("console-state")),
            "retry_tiers": ("1s",),
            "inline_attempts": 1,
            "inline_backoff_s": 0.05,
            "inline_deadline_s": 1.0,
            "max_attempts": 1,
            "code_version": "test",
            "log_format": "console",
        }
    )
    scene = Scene(settings, unique)
    await create_topics(settings, [Subscription(scene.group, (scene.input,))], [scene.output])
    await publish(settings, probe_records(scene.input, unique))
    async with scene.runtime:
        letters = await read_records(kafka_bootstrap, scene.dlq, count=TOTAL, timeout_s=60)
        assert len(letters) == TOTAL
        scene.plan.permanent.clear()  # the fault is fixed; on-call replays what failed
        shutil.rmtree(ARTEFACTS, ignore_errors=True)
        ARTEFACTS.mkdir(parents=True)
        await asyncio.to_thread(scene.server.start_blocking)
        try:
            yield scene
        finally:
            await asyncio.to_thread(scene.server.stop_blocking)


def look_around(browser: Browser, scene: Scene) -> tuple[str, str]:
    """Sign in, see the overview, the groups, letters of two kinds and a case."""
    browser.open("/")
    browser.wait_for("the sign-in page", lambda: "/login" in browser.driver.current_url)
    browser.shot("01-sign-in")
    browser.sign_in("alice")

    row = f'#overview tr[data-group="{scene.group}"]'
    browser.wait_reload("every dead letter counted", lambda: browser.text(f"{row} .count") == "30")
    browser.shot("02-overview")

    browser.open(f"/groups?group={scene.group}")
    counts = {
        r.get_attribute("data-fingerprint") or "": int(
            r.find_element(By.CSS_SELECTOR, ".count").text
        )
        for r in browser.all("#groups tr[data-fingerprint]")
    }
    assert sorted(counts.values()) == [2, 3, 5, 20], counts
    by_count = {n: fingerprint for fingerprint, n in counts.items()}
    browser.shot("03-groups")

    handler_fp, invalid_fp = by_count[HANDLER_FAILURES], by_count[SCHEMA_INVALID]
    browser.open(f"/letters?group={scene.group}&fingerprint={handler_fp}")
    assert len(browser.all("#letters a.letter")) == HANDLER_FAILURES
    assert "PermanentError (handle)" in browser.text("#letters")
    browser.shot("04-letters")

    browser.click("#letters a.letter")
    status = browser.text("#payload-status")
    assert "decodes and validates as test.probe.v1" in status, status
    assert "x-hub-error-fingerprint" in browser.text("#headers")
    browser.shot("05-letter")

    browser.open(f"/letters?group={scene.group}&fingerprint={invalid_fp}")
    browser.click("#letters a.letter")
    assert "does not decode" in browser.text("#payload-status")
    assert "seq" in browser.text("#problem")
    invalid_letter = browser.driver.current_url
    browser.shot("06-letter-invalid")
    browser.click("#case-link")
    browser.wait_for("the case page", lambda: "Case case-" in browser.text("h1"))
    browser.shot("07-case")

    return handler_fp, invalid_letter


def replay_and_edit(browser: Browser, scene: Scene) -> dict[str, str]:
    """Dry-run and replay the handler failures, edit one invalid letter, read the audit."""
    handler_fp, invalid_letter = look_around(browser, scene)
    browser.open(f"/dry-run?group={scene.group}&fingerprint={handler_fp}")
    browser.click("#dry-run-button")
    browser.wait_for("the dry-run", lambda: "20 selected" in browser.text("#dry-run-summary"))
    assert browser.text("#dry-run-summary") == "20 selected: 20 pass"
    browser.shot("08-dry-run")

    browser.fill("#replay-form input[name=rate]", "10")
    browser.fill("#replay-form input[name=reason]", "fix deployed")
    browser.click("#replay-button")
    browser.wait_for("the replay page", lambda: "/replays/" in browser.driver.current_url)
    replay_id = browser.driver.current_url.rsplit("/", 1)[1]
    browser.shot("09-replay-running")
    browser.wait_for(
        "the group to process every replayed case",
        lambda: (
            browser.text("#state") == "done"
            and browser.text("#sent") == "20"
            and browser.text("#replay_topic_lag") == "0"
            and browser.text("#replay_topic_committed") == "20"
        ),
    )
    browser.shot("10-replay-done")

    browser.driver.get(invalid_letter)
    browser.click("#edit-link")
    payload = browser.find("#payload")
    assert json.loads(payload.get_attribute("value") or "") == {"seq": "not a number"}
    browser.fill("#payload", json.dumps({"seq": EDITED_SEQ}))
    browser.click("#preview")
    assert [c.text for c in browser.all("#diff td")] == ["seq", '"not a number"', "100"]
    browser.shot("11-edit-diff")
    browser.click("#send-edit")
    assert "Edited copy" in browser.text("#edited")
    browser.shot("12-edited")

    resumed_id = stop_and_resume(browser, scene, handler_fp)
    browser.open("/replays")
    assert replay_id in browser.text("#replays")
    assert resumed_id in browser.text("#replays")
    browser.shot("13-replays")

    browser.open("/audit?actor=alice")
    actions = {cell.text for cell in browser.all("#audit td.action")}
    assert {"show", "dry-run", "replay", "edit"} <= actions, actions
    browser.shot("14-audit")
    browser.sign_out()
    return {"replay_id": replay_id, "handler_fp": handler_fp, "resumed_id": resumed_id}


def stop_and_resume(browser: Browser, scene: Scene, handler_fp: str) -> str:
    """A slow replay stopped after its first chunks, then resumed: each letter is sent once."""
    browser.open(f"/letters?group={scene.group}&fingerprint={handler_fp}")
    browser.fill("#replay-form input[name=rate]", "4")  # one record a chunk, four a second
    browser.click("#replay-button")
    browser.wait_for("the replay to start", lambda: int(browser.text("#sent")) >= 1)
    replay_id = browser.driver.current_url.rsplit("/", 1)[1]
    browser.click("#stop")
    browser.wait_for("the replay to stop", lambda: browser.text("#state") == "stopped")
    assert 1 <= int(browser.text("#sent")) < HANDLER_FAILURES
    browser.shot("13a-replay-stopped")
    browser.click("#resume")
    browser.wait_for(
        "the resumed replay to finish",
        lambda: browser.text("#state") == "done" and browser.text("#sent") == "20",
    )
    return replay_id


def viewer_flow(browser: Browser, scene: Scene) -> tuple[dict[str, str], str]:
    """A viewer sees everything and may dry-run, but is offered no replay, edit or purge."""
    browser.sign_in("victor")
    browser.open(f"/letters?group={scene.group}")
    assert "Replaying needs the operator role" in browser.text("main")
    assert not browser.all("#replay-form")
    browser.click("#letters a.letter")
    assert not browser.all("#edit-link")
    browser.shot("15-viewer-letter")
    browser.open("/")
    assert "purge" not in browser.text("#overview")
    cookies, csrf = browser.cookies(), browser.csrf()
    browser.open(f"/purge?topic={scene.dlq}")
    assert "viewer role" in browser.text("#error")
    browser.shot("16-viewer-refused")
    return cookies, csrf


def purge_flow(browser: Browser, scene: Scene) -> None:
    """Purge needs the topic's name typed: a wrong one deletes nothing, the right one all."""
    browser.sign_in("alice")
    browser.open(f"/purge?topic={scene.dlq}")
    assert browser.text("#purge-count") == str(TOTAL)
    browser.fill("#confirm", "yes")
    browser.shot("17-purge-confirm")
    browser.click("#purge-button")
    assert "Type the topic name" in browser.text("#error")
    browser.back()
    browser.fill("#confirm", scene.dlq)
    browser.click("#purge-button")
    assert browser.text("#purged") == f"{TOTAL} dead letter(s) deleted from {scene.dlq}"
    browser.shot("18-purged")
    browser.open("/")
    browser.wait_reload(
        "the purged letters gone",
        lambda: (
            bool(browser.all("#empty"))
            or (f'tr[data-group="{scene.group}"]' not in browser.driver.page_source)
        ),
    )
    browser.shot("19-overview-after-purge")


def refusals(base_url: str, viewer: dict[str, str], viewer_csrf: str, operator: Browser) -> None:
    """Without a session, with the viewer role or without the CSRF token: refused."""
    selection = {"group": "g", "reason": "x"}
    with httpx.Client(base_url=base_url, follow_redirects=False) as anonymous:
        home = anonymous.get("/")
        assert home.status_code == 303
        assert home.headers["location"].startswith("/login")
        assert anonymous.get("/replays/abc/progress.json").status_code == 401
        assert anonymous.get("/static/console.js").status_code == 303
        assert anonymous.get("/no-such-page").status_code == 303  # not even a 404 page
        assert anonymous.post("/replays", data=selection).status_code == 401
        # Signing in never leads off the console, and needs the form's token.
        form = anonymous.get("/login")
        token = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        sign_in = {"name": "victor", "password": PASSWORDS["victor"], "next": "//evil.example"}
        assert anonymous.post("/login", data=sign_in).status_code == 403  # no token
        signed_in = anonymous.post("/login", data={**sign_in, "csrf": token})
        assert (signed_in.status_code, signed_in.headers["location"]) == (303, "/")
    with httpx.Client(base_url=base_url, cookies=viewer, follow_redirects=False) as victor:
        assert victor.get("/").status_code == 200
        refused = victor.post("/replays", data={**selection, "csrf": viewer_csrf})
        assert refused.status_code == 403
        assert "operators only" in refused.text
        assert victor.post("/purge", data={"topic": "t", "csrf": viewer_csrf}).status_code == 403
    operator.sign_in("alice")
    with httpx.Client(base_url=base_url, cookies=operator.cookies()) as alice:
        assert alice.post("/replays", data=selection).status_code == 403
        wrong = alice.post("/replays", data={**selection, "csrf": viewer_csrf})
        assert wrong.status_code == 403
        assert "CSRF" in wrong.text
        headers = alice.get("/").headers
        assert "script-src 'self'" in headers["content-security-policy"]
    operator.sign_out()


async def test_on_call_console_in_a_real_browser(scene: Scene, driver: webdriver.Chrome) -> None:
    browser = Browser(driver, scene.server.url)
    found = await asyncio.to_thread(replay_and_edit, browser, scene)

    outputs = await read_records(
        scene.settings.kafka_bootstrap_servers, scene.output, count=HANDLER_FAILURES + 1
    )
    seqs = sorted(ProbeDoneV1.model_validate_json(r.value or b"").seq for r in outputs)
    assert seqs == [*range(HANDLER_FAILURES), EDITED_SEQ]  # every replayed case processed once
    assert scene.runtime.pipeline.counts[Outcome.PROCESSED] == HANDLER_FAILURES + 1

    viewer_cookies, viewer_csrf = await asyncio.to_thread(viewer_flow, browser, scene)
    await asyncio.to_thread(refusals, scene.server.url, viewer_cookies, viewer_csrf, browser)
    await asyncio.to_thread(purge_flow, browser, scene)

    records = await read_records(
        scene.settings.kafka_bootstrap_servers,
        AUDIT,
        count=1000,
        timeout_s=5,
        match=lambda record: record.key == scene.group.encode(),
    )
    trail = [OpsActionAuditedV1.model_validate_json(r.value or b"") for r in records]
    replays = [a for a in trail if a.action == "replay"]
    replay = replays[0]
    assert (replay.actor, replay.count, replay.reason) == (
        "alice",
        HANDLER_FAILURES,
        "fix deployed",
    )
    assert replay.replay_id == found["replay_id"]
    assert replay.selection == {"group": scene.group, "fingerprint": found["handler_fp"]}
    # The stopped run and its resumption: one audit event each, 20 sent between them.
    assert [a.replay_id for a in replays[1:]] == [found["resumed_id"]] * 2
    assert sum(a.outcome["sent"] for a in replays[1:]) == HANDLER_FAILURES
    assert [a.outcome["done"] for a in replays[1:]] == [0, 1]
    assert [a.actor for a in trail if a.action == "purge"] == ["alice"]
    assert next(a for a in trail if a.action == "edit").diff[0].after == EDITED_SEQ
    assert {a.actor for a in trail if a.action == "show"} == {"alice", "victor"}
    assert not [a for a in trail if a.action == "replay" and a.actor == "victor"]
    # Refused requests sent nothing: alice's two replay runs are all there is.
    assert {a.replay_id for a in replays} == {found["replay_id"], found["resumed_id"]}

    names = sorted(path.name for path in browser.shots)
    assert len(names) == 20, names
    assert all(path.stat().st_size > 1000 for path in browser.shots)
