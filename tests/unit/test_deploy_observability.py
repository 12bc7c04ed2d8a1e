import json
import re
import subprocess

import yaml
from prometheus import ROOT, prometheus_bin
from prometheus_client import REGISTRY

import hub.core.metrics  # noqa: F401 - registers the hub's metrics

DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "alerts.test.yml"
DASHBOARD = DEPLOY / "grafana" / "hub-dashboard.json"
HUB_NAME = re.compile(r"\bhub_[a-z_]+\b")
ISSUE_ALERTS = {
    "HubDeadLettersGrowing", "HubConsumerLagHigh", "HubNoConsumption", "HubSlaBreaches",
    "HubPartnerErrorRate",
}  # fmt: skip


def exported_names() -> set[str]:
    """Every sample name the hub's registry can expose (counters with _total, histograms' parts)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    families = list(REGISTRY.collect())
    return {
        family.name + suffix
        for family in families
        if family.name.startswith("hub_")
        for suffix in suffixes.get(family.type, ("",))
    }


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - Debian's promtool, fixed arguments
        [str(prometheus_bin() / "promtool"), *args], capture_output=True, text=True, check=False
    )


def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_the_issue_asks_for_exists_and_has_a_unit_test() -> None:
    rules = yaml.safe_load(RULES.read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert alerts >= ISSUE_ALERTS
    tests = yaml.safe_load(RULE_TESTS.read_text())
    tested = {
        case["alertname"]
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert tested == alerts, f"alerts without a firing test: {alerts - tested}"
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]


def test_rules_and_dashboard_use_only_metrics_the_hub_exports() -> None:
    exported = exported_names()
    assert {
        "hub_dead_letters_total",
        "hub_consumer_lag",
        "hub_partner_call_seconds_count",
    } <= exported
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    rules = yaml.safe_load(RULES.read_text())
    exprs += [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    used = {name for expr in exprs for name in HUB_NAME.findall(expr)}
    assert used - exported == set(), "unknown metric names"


def test_the_dashboard_is_grafana_json_with_a_panel_per_kernel_figure() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "aftersales-hub"
    exprs = " ".join(target["expr"] for panel in dashboard["panels"] for target in panel["targets"])
    for metric in (
        "hub_records_total", "hub_record_handling_seconds_bucket", "hub_consumer_lag",
        "hub_dead_letters_total", "hub_retries_scheduled_total", "hub_parked_keys",
        "hub_batch_records_bucket", "hub_partner_call_seconds", "hub_notifications_total",
        "hub_sla_breaches_total",
    ):  # fmt: skip
        assert metric in exprs, metric
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
