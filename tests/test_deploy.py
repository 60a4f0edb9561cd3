"""The deployment (docker-compose.yml and hub/deploy/): its structure, each file checked by
the tool that runs it where that tool is installed (`docker-compose config`, `nginx -t`,
`promtool check`), and every metric the alerts and the dashboard read exists in
hub/metrics.py. No database, no Docker engine."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

# CI (.ci/run) installs the tools and sets this, so there a missing one fails instead of
# skipping.
REQUIRED = os.environ.get("HUB_TEST_DEPLOY_TOOLS") == "required"
if REQUIRED:
    import yaml  # PyYAML: a dependency of schemathesis (the test extra)
else:
    yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "hub" / "deploy"
COMPOSE = ROOT / "docker-compose.yml"
NGINX = DEPLOY / "nginx.conf"
ALERTS = DEPLOY / "alerts.yml"
PROMETHEUS = DEPLOY / "prometheus.yml"
DASHBOARD = DEPLOY / "dashboard.json"
REPLICAS = ("hub1", "hub2")


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def _services() -> dict[str, Any]:
    return dict(_compose()["services"])


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if REQUIRED:
            pytest.fail(f"{name} is not installed and HUB_TEST_DEPLOY_TOOLS=required")
        pytest.skip(f"{name} is not installed (.ci/run installs it)")
    return path


def _run(*command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, check=False)


def test_two_replicas_run_the_same_image_after_the_migration() -> None:
    services = _services()
    for name in REPLICAS:
        hub = services[name]
        assert hub["command"] == ["python", "-m", "hub", "serve"]
        assert hub["image"] == services["migrate"]["image"]
        assert hub["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert hub["depends_on"]["mysql"] == {"condition": "service_healthy"}
        assert hub["depends_on"]["redis"] == {"condition": "service_healthy"}
        assert "/ready" in " ".join(hub["healthcheck"]["test"])
        assert "ports" not in hub  # reached through the proxy only
    migrate = services["migrate"]
    assert migrate["command"] == ["python", "-m", "hub", "migrate"]
    assert migrate["restart"] == "no"  # once, not again and again
    assert migrate["depends_on"]["mysql"] == {"condition": "service_healthy"}
    # Nothing else runs the migration.
    assert [n for n, s in services.items() if "migrate" in str(s.get("command", ""))] == ["migrate"]


def test_the_replicas_drain_within_their_grace_and_trust_only_the_proxy() -> None:
    services = _services()
    proxy_address = services["proxy"]["networks"]["hub"]["ipv4_address"]
    for name in REPLICAS:
        hub = services[name]
        environment = hub["environment"]
        drain = _number(r"\$\{HUB_DRAIN_SECONDS:-(\d+)\}", environment["HUB_DRAIN_SECONDS"])
        grace = _number(r"(\d+)s", hub["stop_grace_period"])
        assert grace >= drain + 10
        assert environment["FORWARDED_ALLOW_IPS"] == proxy_address
        assert environment["HUB_PUBLIC_URL"]
        assert environment["HUB_SECRET_KEY"].startswith("${HUB_SECRET_KEY:?")


def test_mysql_redis_and_the_hubs_have_health_checks_and_named_volumes() -> None:
    compose = _compose()
    services = compose["services"]
    for name in ("mysql", "redis", "proxy", *REPLICAS):
        assert services[name]["healthcheck"]["test"], name
    named = set(compose["volumes"])
    for name, path in (("mysql", "/var/lib/mysql"), ("redis", "/data")):
        sources = {v.split(":")[1]: v.split(":")[0] for v in services[name]["volumes"]}
        assert sources[path] in named, name


def test_the_proxy_balances_over_both_replicas_and_passes_websocket_upgrades() -> None:
    services = _services()
    proxy = services["proxy"]
    assert proxy["image"].startswith("nginx:")
    assert "./hub/deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in proxy["volumes"]
    assert set(proxy["depends_on"]) == set(REPLICAS)
    config = NGINX.read_text()
    upstream = re.search(r"upstream hub \{(.*?)\}", config, re.S)
    assert upstream is not None
    servers = re.findall(r"^\s*server (\S+):8000 ([^;]*);\s*# (\w+)", upstream[1], re.M)
    addresses = {name: services[name]["networks"]["hub"]["ipv4_address"] for name in REPLICAS}
    assert {name: address for address, _, name in servers} == addresses
    for _, options, _ in servers:
        assert "max_fails=" in options and "fail_timeout=" in options
    # Failing over on a 503 (a draining replica), never with non_idempotent: a booking is
    # never sent to both.
    retries = re.findall(r"^\s*proxy_next_upstream (.*);", config, re.M)
    assert retries == ["error timeout http_503"]
    websocket = re.search(r"location = /ws \{(.*?)\}", config, re.S)
    assert websocket is not None
    assert "proxy_set_header Upgrade $http_upgrade;" in websocket[1]
    assert "proxy_set_header Connection $connection_upgrade;" in websocket[1]
    assert re.search(r"proxy_read_timeout \d+h;", websocket[1])
    assert re.search(r"location = /metrics \{\s*return 404;", config)


def test_monitoring_mounts_the_alert_rules_and_the_dashboard() -> None:
    services = _services()
    assert (
        "./hub/deploy/alerts.yml:/etc/prometheus/alerts.yml:ro" in services["prometheus"]["volumes"]
    )
    assert yaml.safe_load(PROMETHEUS.read_text())["rule_files"] == ["alerts.yml"]
    targets = [
        target
        for job in yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"]
        for group in job["static_configs"]
        for target in group["targets"]
    ]
    assert targets == [f"{name}:8000" for name in REPLICAS]  # each replica, not the proxy
    assert any(v.startswith("./hub/deploy/dashboard.json:") for v in services["grafana"]["volumes"])
    # Every file the compose file mounts from the checkout is there (the image carries none).
    for service in services.values():
        for volume in service.get("volumes", []):
            if volume.startswith("./"):
                assert (ROOT / volume.split(":")[0]).is_file(), volume


def test_docker_compose_accepts_the_file() -> None:
    binary = _tool("docker-compose")
    env = {**os.environ, "HUB_SECRET_KEY": "x" * 48}
    answer = _run(binary, "-f", str(COMPOSE), "config", "--quiet", env=env)
    assert answer.returncode == 0, answer.stderr
    # --profile: the monitoring services too (1.28+ reads profiles)
    answer = _run(binary, "-f", str(COMPOSE), "--profile", "monitoring", "config", env=env)
    assert answer.returncode == 0, answer.stderr
    assert {"prometheus", "grafana", *REPLICAS} <= set(yaml.safe_load(answer.stdout)["services"])


def test_nginx_accepts_its_config(tmp_path: Path) -> None:
    # The file as it is: its upstreams are addresses, so nothing needs resolving here; the
    # prefix (-p) takes the pid file, -e the early error log.
    binary = _tool("nginx")
    shutil.copy(NGINX, tmp_path / "nginx.conf")
    answer = _run(
        binary, "-t", "-q", "-p", str(tmp_path), "-e", "stderr", "-c", str(tmp_path / "nginx.conf")
    )
    assert answer.returncode == 0, answer.stderr


def test_promtool_accepts_the_alert_rules_and_the_prometheus_config() -> None:
    binary = _tool("promtool")
    answer = _run(binary, "check", "rules", str(ALERTS))
    assert answer.returncode == 0, answer.stdout + answer.stderr
    answer = _run(binary, "check", "config", str(PROMETHEUS))  # loads alerts.yml as well
    assert answer.returncode == 0, answer.stdout + answer.stderr


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    # Each panel's query as a recording rule, Grafana's variables filled in as it would.
    binary = _tool("promtool")
    rules = [
        {"record": f"dashboard:query{i}", "expr": _grafana_to_promql(expr)}
        for i, expr in enumerate(_dashboard_queries())
    ]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    answer = _run(binary, "check", "rules", str(path))
    assert answer.returncode == 0, answer.stdout + answer.stderr


def test_every_alert_has_a_duration_a_severity_and_words() -> None:
    rules = [
        rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]
    ]
    for rule in rules:
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in ("page", "ticket"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    expressions = " ".join(rule["expr"] for rule in rules)
    # What the issue asks to page on: down, 5xx, outbox lag, 1011/1013, database or Redis.
    for needle in ("up{", '"5.."', "hub_outbox_lag_seconds", '"1011"', '"1013"', "hub_ready{"):
        assert needle in expressions, needle


def test_every_metric_the_alerts_and_dashboard_read_is_one_the_hub_exports() -> None:
    exported = _exported_series()
    queries = [
        rule["expr"]
        for group in yaml.safe_load(ALERTS.read_text())["groups"]
        for rule in group["rules"]
    ]
    queries += _dashboard_queries()
    used: set[str] = set()
    for query in queries:
        # A selector: a name before `{` (every query here names its job), and any hub_ or
        # process_ name wherever it stands.
        used |= set(re.findall(r"\b([a-zA-Z_:][\w:]*)\{", query))
        used |= set(re.findall(r"\b((?:hub|process)_\w+)", query))
    assert used - {"up"}, "no metric found: the patterns above are stale"
    assert sorted(used - {"up"} - exported) == []
    assert {"hub_outbox_lag_seconds", "hub_ready", "hub_ws_closes_total"} <= used


def _number(pattern: str, text: str) -> int:
    match = re.fullmatch(pattern, text)
    assert match is not None, text
    return int(match[1])


def _dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    queries += [v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    assert queries
    return queries


def _grafana_to_promql(expr: str) -> str:
    """A Grafana query as the PromQL it sends: its variables filled in, and a variable's
    `label_values(selector, label)` as the selector it reads."""
    expr = re.sub(r"^label_values\((.*), *\w+\)$", r"\1", expr)
    return expr.replace("$__rate_interval", "5m").replace("$instance", ".*")


def _exported_series() -> set[str]:
    """Every series name hub/metrics.py declares, as Prometheus sees it: a counter's `_total`,
    a histogram's `_bucket`, `_count` and `_sum`, a gauge as named."""
    tree = ast.parse((ROOT / "hub" / "metrics.py").read_text())
    series: set[str] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        kind = getattr(node.func, "id", None)
        first = node.args[0]
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            continue
        name = first.value
        if kind in ("Counter", "CounterMetricFamily"):
            series.add(name.removesuffix("_total") + "_total")
        elif kind == "Histogram":
            series |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
        elif kind in ("Gauge", "GaugeMetricFamily"):
            series.add(name)
    assert "hub_http_request_duration_seconds_count" in series
    return series
