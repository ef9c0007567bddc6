"""Benchmarks of the web console on the whole stack (``Stack.isolated``: every service, the
console behind the gateway), in a real headless Chromium (Debian's, through Playwright).

1. The experiments page at N experiments (default 100,000, one owner, seeded like
   bench/experiments_bench.py): server time of ``GET /experiments`` through the gateway (the
   console, its API calls through the gateway to experiments, the rendering), first page of 50,
   without a filter, with a filter, with full text.
2. A drawn chart of 10 experiments x E epochs (default 100,000, 4 metrics, seeded with
   generate_series, their history summaries by the experiments service's rebuild): from
   navigation to ``/compare?id=...`` until its charts are drawn, and where that time goes (the
   page's own clocks: HTML, scripts, the histories read and its size, parsing, drawing).
3. Live: an open experiment page while a script logs R epochs per second (default 50, one
   request per epoch through the API): from each POST's answer to the point on the page.

Usage: uv run python bench/console_bench.py [--experiments 100000] [--epochs 100000]
       [--rate 50] [--seconds 20] [--repeat 30] [--chart-repeat 10] [--skip-live]
Needs /usr/bin/chromium (``make browser``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import platform
import re
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
from playwright.sync_api import sync_playwright

from runyard.devstack import Stack
from runyard.experiments.tracking.repository import history
from runyard.shared.db import create_engine, create_sessionmaker

HERE = Path(__file__).resolve().parent
PASSWORD = "correct horse battery staple"
METRICS = ["train_loss", "val_loss", "train_accuracy", "val_accuracy"]
#: runs in the page before its scripts: records when the chart showed each last epoch
ARRIVALS = """
window.__arrivals = [];
new MutationObserver(() => {
  const el = document.getElementById("charts");
  if (el && el.dataset.lastEpoch) window.__arrivals.push([Number(el.dataset.lastEpoch), Date.now()]);
}).observe(document, {subtree: true, attributes: true, attributeFilter: ["data-last-epoch"]});
"""


#: where the time of a /compare navigation goes, from the page's own clocks (ms since the
#: navigation started; the histories' size in bytes as sent)
TIMINGS = """(() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const reads = performance.getEntriesByType("resource").filter(
    (r) => r.name.includes("/console-api/histories"));
  const read = reads[reads.length - 1];
  const charts = document.getElementById("compare-charts").dataset;
  return {
    "page HTML received (ms)": nav.responseEnd,
    "scripts run, histories asked (ms)": read.requestStart,
    "histories received (ms)": read.responseEnd,
    "histories requests (1: the preload was used)": reads.length,
    "histories JSON bytes": read.decodedBodySize,
    "histories parsed (ms)": Number(charts.parsedMs),
    "charts drawn (ms)": Number(charts.drawnMs),
  };
})()"""


def cpu_by_process() -> dict[str, float]:
    """CPU seconds (user + system) so far of this process's descendants, by role: the stack's
    services, PostgreSQL, Chromium (the machine is shared: CPU per operation is steadier than
    wall time)."""
    roles = {
        "runyard.console": "console",
        "runyard.gateway": "gateway",
        "runyard.experiments": "experiments",
        "runyard.notifications": "notifications",
        "runyard.webhooks": "webhooks",
        "runyard.auth": "auth",
        "postgres": "postgres",
        "chrom": "chromium",
        "tansu": "broker",
    }
    found: dict[str, float] = {}
    for process in psutil.Process(os.getpid()).children(recursive=True):
        try:
            command = " ".join(process.cmdline()) or process.name()
            times = process.cpu_times()
        except psutil.Error:
            continue
        role = next((r for key, r in roles.items() if key in command), "other")
        found[role] = found.get(role, 0.0) + times.user + times.system
    return found


def load_experiments_bench() -> Any:
    spec = importlib.util.spec_from_file_location(
        "experiments_bench", HERE / "experiments_bench.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def summary(ms: list[float]) -> str:
    return (
        f"p50 {percentile(ms, 0.5):.0f} / p95 {percentile(ms, 0.95):.0f} ms "
        f"(mean {statistics.fmean(ms):.0f}, n={len(ms)})"
    )


def register(api: httpx.Client) -> tuple[str, str, str]:
    name = f"bench{uuid.uuid4().hex[:8]}"
    api.post(
        "/api/v1/auth/register",
        json={"username": name, "email": f"{name}@example.test", "password": PASSWORD},
    ).raise_for_status()
    login = api.post("/api/v1/auth/login", json={"login": name, "password": PASSWORD})
    login.raise_for_status()
    me = api.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"}
    )
    return name, login.json()["access_token"], me.json()["id"]


def sign_in(browser: httpx.Client, name: str) -> None:
    token = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/login").text)
    assert token
    browser.post("/login", data={"login": name, "password": PASSWORD, "csrf_token": token[1]})


async def seed_histories(
    dsn: str, admin_url: str, owner: str, count: int, epochs: int
) -> list[str]:
    conn = await asyncpg.connect(dsn)
    ids = []
    try:
        for n in range(count):
            experiment = uuid.uuid4()
            ids.append(str(experiment))
            await conn.execute(
                """INSERT INTO experiments.experiments (id, name, owner_id, status, config,
                       hyperparameters, metrics, total_epochs, version, best_metric, best_mode,
                       created_at, updated_at)
                   VALUES ($1, $2, $3, 'completed', '{}', $4::jsonb,
                       '{"train_loss": 0.1, "val_loss": 0.1, "train_accuracy": 0.9,
                         "val_accuracy": 0.9}', $5, 1, 'val_loss', 'min', now(), now())""",
                experiment,
                f"long-{n}",
                uuid.UUID(owner),
                f'{{"lr": {0.001 * (n + 1)}}}',
                epochs,
            )
            await conn.execute(
                """INSERT INTO experiments.training_runs (experiment_id, epoch, train_loss,
                       val_loss, train_accuracy, val_accuracy, metrics, created_at, updated_at)
                   SELECT $1, e, 1.0 / (e + 1), 1.1 / (e + 1) + random() / 50,
                          0.5 + e::float8 / $2 / 2, 0.45 + e::float8 / $2 / 2, '{}', now(), now()
                   FROM generate_series(0, $2 - 1) AS e""",
                experiment,
                epochs,
            )
        await conn.execute("ANALYZE experiments.training_runs")
    finally:
        await conn.close()
    # the runs went around the write path: their block summaries by the service's own rebuild
    # (none to fill in a checkout from before the summaries, for a comparison)
    if not hasattr(history, "rebuild_summary"):
        return ids
    engine = create_engine(admin_url, pool_size=1)
    try:
        async with create_sessionmaker(engine, schema="experiments")() as session:
            for experiment_id in ids:
                await history.rebuild_summary(session, uuid.UUID(experiment_id))
            await session.commit()
    finally:
        await engine.dispose()
    return ids


def bench_pages(stack: Stack, name: str, owner: str, args: argparse.Namespace) -> dict[str, str]:
    experiments = load_experiments_bench()
    seconds = asyncio.run(
        experiments.seed(stack.admin_dsn, uuid.UUID(owner), args.experiments, uuid.uuid4())
    )
    result = {"seeded experiments": f"{args.experiments:,} in {seconds:.0f} s"}
    searches = {
        "experiments page, no filter": {},
        "... filter metrics.val_accuracy > 0.9 and model_type = 'cnn1d'": {
            "filter": "metrics.val_accuracy > 0.9 and model_type = 'cnn1d'"
        },
        "... full text q=cavitation": {"q": "cavitation"},
    }
    with httpx.Client(base_url=stack.gateway_url, timeout=60, trust_env=False) as browser:
        sign_in(browser, name)
        for label, params in searches.items():
            for _ in range(3):
                browser.get("/experiments", params=params)
            times = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                response = browser.get("/experiments", params=params)
                times.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.status_code
            result[label] = summary(times)
    return result


def bench_browser(
    stack: Stack, name: str, owner: str, token: str, args: argparse.Namespace
) -> dict[str, str]:
    ids = asyncio.run(
        seed_histories(stack.admin_dsn, stack.admin_database_url, owner, 10, args.epochs)
    )
    result: dict[str, str] = {}
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox"]
        )
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.goto(f"{stack.gateway_url}/login")
        page.fill("input[name=login]", name)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/experiments")
        compare = f"{stack.gateway_url}/compare?" + "&".join(f"id={i}" for i in ids)
        drawn = "#compare-charts[data-drawn]:not([data-drawn='0'])"
        times = []
        parts: dict[str, list[float]] = {}
        page.goto(compare)  # warm: connections, static files in the cache
        page.wait_for_selector(drawn, state="attached", timeout=60_000)
        cpu_before = cpu_by_process()
        for _ in range(args.chart_repeat):
            started = time.perf_counter()
            page.goto(compare)
            page.wait_for_selector(drawn, state="attached", timeout=60_000)
            times.append((time.perf_counter() - started) * 1000)
            for key, value in page.evaluate(TIMINGS).items():
                parts.setdefault(key, []).append(value)
        cpu_after = cpu_by_process()
        result[f"chart of 10 x {args.epochs:,} epochs drawn"] = summary(times)
        for key, values in parts.items():
            result[f"  {key}"] = f"p50 {percentile(values, 0.5):,.0f}"
        spent = {
            role: (cpu_after[role] - cpu_before.get(role, 0.0)) * 1000 / args.chart_repeat
            for role in sorted(cpu_after)
        }
        result["  CPU ms per chart load, by process"] = ", ".join(
            f"{role} {ms:.0f}" for role, ms in spent.items() if ms >= 1
        )

        if args.skip_live:
            browser.close()
            return result

        # live: one running experiment, its page open, epochs logged through the API
        with httpx.Client(
            base_url=f"{stack.gateway_url}/api/v1",
            timeout=30,
            trust_env=False,
            headers={"Authorization": f"Bearer {token}"},
        ) as api:
            run = api.post("/experiments", json={"name": f"live-{uuid.uuid4().hex[:6]}"}).json()[
                "id"
            ]
            api.post(
                f"/experiments/{run}/runs", json={"epoch": 0, "val_loss": 1.0, "train_loss": 1.0}
            ).raise_for_status()
            page.add_init_script(ARRIVALS)
            page.goto(f"{stack.gateway_url}/experiments/{run}")
            page.wait_for_selector(
                "body[data-live-connected='true']", state="attached", timeout=30_000
            )
            page.wait_for_selector("#charts[data-last-epoch='0']", state="attached", timeout=30_000)
            sent: dict[int, float] = {}
            total = int(args.rate * args.seconds)
            senders = 3  # one request per epoch; a few in flight, as several loggers would
            begin = time.perf_counter()

            def send(offset: int) -> None:
                with httpx.Client(
                    base_url=f"{stack.gateway_url}/api/v1",
                    timeout=30,
                    trust_env=False,
                    headers={"Authorization": f"Bearer {token}"},
                ) as own:
                    for epoch in range(1 + offset, total + 1, senders):
                        delay = begin + epoch / args.rate - time.perf_counter()
                        if delay > 0:
                            time.sleep(delay)
                        body = {"epoch": epoch, "val_loss": 1 / (epoch + 1), "train_loss": 0.5}
                        own.post(f"/experiments/{run}/runs", json=body).raise_for_status()
                        sent[epoch] = time.time() * 1000

            threads = [threading.Thread(target=send, args=(k,)) for k in range(senders)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            achieved = total / (time.perf_counter() - begin)
            page.wait_for_selector(
                f"#charts[data-last-epoch='{total}']", state="attached", timeout=60_000
            )
            arrivals = sorted(page.evaluate("window.__arrivals"))
        # an epoch is on the page once the chart's last epoch is it or a later one
        latencies = []
        for epoch, at in sent.items():
            shown = min((t for e, t in arrivals if e >= epoch and t >= at - 5), default=None)
            if shown is not None:
                latencies.append(shown - at)
        result[f"live: logged at {achieved:.0f} epochs/s, on the page"] = (
            f"{summary(latencies)} after the API's answer, {len(latencies)} of {total} epochs"
        )
        browser.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--experiments", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--chart-repeat", type=int, default=10, help="timed chart loads")
    parser.add_argument("--skip-live", action="store_true", help="no live-epochs part")
    args = parser.parse_args()
    result: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp, Stack.isolated(Path(tmp) / "stack") as stack:
        with httpx.Client(base_url=stack.gateway_url, timeout=30, trust_env=False) as api:
            live_user = register(api)
            page_user = register(api)
        result.update(bench_browser(stack, live_user[0], live_user[2], live_user[1], args))
        if args.experiments:
            result.update(bench_pages(stack, page_user[0], page_user[2], args))
    print(f"machine: {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}")
    for key, value in result.items():
        print(f"{key:>64}: {value}")


if __name__ == "__main__":
    main()
