"""The console in a real browser (Playwright driving Debian's chromium): sign in, reload and still
be signed in, every page (screenshots in test-artifacts/console/), open a deep link and the
glossary, click the queue's row of a transfer the stream held, release it and see it leave the
queue at once, then the payment service release it and the lake confirm it. Runs the worker, the
lake sink, the payment service and the console."""
from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest
from console_lake import write_lake
from process_support import ROOT, answers, wait_for

from pipelines.kafka.broker import free_port
from pipelines.lake import parquet as lake
from pipelines.services import auth

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts" / "console"
PASSWORD = "browser-test-password"
PAGES = ["Overview", "Review queue", "Accounts", "Rules and lists", "Recovery cases",
         "Models & data quality", "SQL", "Audit"]

pytestmark = [pytest.mark.kafka,
              pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                 reason=f"{CHROMIUM} is missing: apt-get install -y chromium")]


def _get(url: str, headers: dict):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=3) as r:
            return json.loads(r.read() or b"null") if r.status == 200 else None
    except (OSError, ValueError):
        return None


def _post(url: str, body: dict, headers: dict) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode(),
                                 {"Content-Type": "application/json", **headers})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def _shot(page, name: str) -> None:
    page.wait_for_timeout(1500)  # charts draw after the script ends
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _open(page, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    page.get_by_role("heading", name=title if title != "Models & data quality" else
                     "Models & data quality").first.wait_for(timeout=30_000)
    page.get_by_test_id("stStatusWidget").wait_for(state="hidden", timeout=30_000)


def test_browser_sign_in_reload_pages_deep_link_and_release(kafka, processes, tmp_path):
    from playwright.sync_api import sync_playwright

    from dashboards import users

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    data_dir = tmp_path / "data"
    write_lake(data_dir / "lake")  # some history so that every page has something to show
    users.write_users(data_dir / "console" / "users.yaml", {"root": ("admin", PASSWORD)})
    pay_port, ui_port = free_port(), free_port()
    env = {"VIGIE_DATA_DIR": str(data_dir), "VIGIE_PAYMENT_PORT": str(pay_port),
           "VIGIE_CONSOLE_PORT": str(ui_port), "VIGIE_AVAILABILITY_DELAY_S": "900",
           "VIGIE_SINK_FLUSH_S": "0.5"}
    for name, args in [("worker", ["worker"]), ("sink", ["sink"]),
                       ("payment", ["serve", "payment"]), ("console", ["console"])]:
        processes.start(name, *args, env=env)
    ui = f"http://127.0.0.1:{ui_port}"
    wait_for(lambda: answers(f"{ui}/_stcore/health"), timeout=60, what="the console")
    pay = f"http://127.0.0.1:{pay_port}/v1/transfers"
    # alice's app, with a token signed by this data dir's key (the service's)
    alice = {"Authorization": "Bearer " + auth.Issuer(data_dir / "secrets" / "jwt").mint(
        "e2e", user="e2e-alice")}
    created = wait_for(lambda: _try_post(pay, {"sender": "e2e-alice", "recipient": "e2e-bob",
                                               "amount_cents": 4200, "device": "e2e-phone"},
                                         alice),
                       timeout=60, what="the payment service")
    tid = created["transfer_id"]
    # No model in this data dir: the stream never approves blind, it holds for an analyst.
    wait_for(lambda: (_get(f"{pay}/{tid}", alice) or {}).get("status") == "held", timeout=90,
             what="the stream to hold the transfer")
    wait_for(lambda: _in_lake(data_dir / "lake", tid), timeout=60, what="the hold in the lake")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(ui)
            page.get_by_label("Username", exact=True).fill("root")
            page.get_by_label("Password", exact=True).fill(PASSWORD)
            _shot(page, "00-sign-in")
            page.get_by_role("button", name="Sign in").click()
            page.get_by_test_id("stSidebarNav").wait_for(timeout=30_000)
            # a reload is a new Streamlit session: the signed session cookie keeps the sign-in
            page.wait_for_timeout(1000)  # the cookie's script runs as the page draws
            page.reload()
            page.get_by_role("button", name="Sign out").wait_for(timeout=30_000)
            assert page.get_by_label("Password", exact=True).count() == 0
            for i, title in enumerate(PAGES, start=1):
                _open(page, title)
                _shot(page, f"{i:02d}-{title.lower().replace(' & ', '-').replace(' ', '-')}")

            # a deep link, pasted into the address bar, opens the transfer; its reasons glossary
            page.goto(f"{ui}/review_queue?transfer={tid}")
            page.get_by_role("heading", name=f"Transfer {tid}").wait_for(timeout=30_000)
            page.get_by_text("Glossary of reason codes (EN / FR)").click()
            page.get_by_test_id("stExpanderDetails").filter(
                has=page.get_by_test_id("stDataFrame")).first.wait_for(timeout=30_000)
            _shot(page, "10-deep-link-and-glossary")

            # the queue, narrowed to that transfer: click its row, release it
            _open(page, "Overview")
            _open(page, "Review queue")
            page.get_by_label("Transfer id", exact=True).fill(tid)
            page.get_by_label("Transfer id", exact=True).press("Enter")
            page.get_by_text("1 of").wait_for(timeout=30_000)
            grid = page.get_by_test_id("stDataFrame").first
            box = grid.bounding_box()
            page.mouse.click(box["x"] + 12, box["y"] + 35 + 17)  # the row's selection cell
            page.get_by_role("heading", name=f"Transfer {tid}").wait_for(timeout=30_000)
            _shot(page, "11-queue-row-clicked")
            page.get_by_role("button", name="Release", exact=True).click()
            # Out of the queue at once: optimistically while the lake still shows it held, or
            # already confirmed when the release reached the lake before the page redrew (the
            # whole path can take under a second; test_console_held_and_audit covers the former).
            optimistic = page.get_by_text("out of the queue until the stream confirms")
            confirmed = page.get_by_text("confirmed: it is no longer held")
            optimistic.or_(confirmed).first.wait_for(timeout=30_000)
            confirmed_at_once = confirmed.count() > 0
            page.get_by_text("0 of").wait_for(timeout=30_000)
            _shot(page, "12-released-left-the-queue")
            status = wait_for(lambda: (s := (_get(f"{pay}/{tid}", alice) or {}).get("status")) == "released"
                              and s, timeout=60, what="the payment service to release it")
            assert status == "released"
            # The lake sink records the new status: the release is confirmed.
            wait_for(lambda: _status_in_lake(data_dir / "lake", tid) == "released", timeout=60,
                     what="the released status in the lake")
            if not confirmed_at_once:
                time.sleep(5)  # the console's cached queries refresh every 5 s
                page.get_by_label("Transfer id", exact=True).fill("")
                page.get_by_label("Transfer id", exact=True).press("Enter")
                confirmed.wait_for(timeout=30_000)
            _shot(page, "13-release-confirmed")
        finally:
            browser.close()


def _try_post(url: str, body: dict, headers: dict):
    try:
        return _post(url, body, headers)
    except OSError:
        return None


def _in_lake(lake_dir: Path, tid: str) -> bool:
    con = lake.connect(lake_dir, ["decisions"])
    return con.execute("SELECT count(*) FROM decisions WHERE transfer_id = ?", [tid]).fetchone()[0] > 0


def _status_in_lake(lake_dir: Path, tid: str):
    con = lake.connect(lake_dir, ["transfer-status"])
    row = con.execute("SELECT arg_max(status, ts) FROM transfer_status WHERE transfer_id = ?",
                      [tid]).fetchone()
    return row[0] if row else None
