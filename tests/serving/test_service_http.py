"""``nbp serve`` for real on 127.0.0.1, and the staff page in a headless browser."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from servingkit import TOKENS, Built, bearer

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
START_TIMEOUT_S = 180


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chromium(tmp_path: Path, profile: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless chromium with a fresh profile and no network but loopback; ``args`` end with the URL."""
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        f"--user-data-dir={tmp_path / profile}",
        "--virtual-time-budget=20000",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


def _page_dom(url: str, tmp_path: Path) -> str:
    """The page's DOM after its scripts ran."""
    return _chromium(tmp_path, "profile", "--dump-dom", url).stdout


@pytest.fixture(scope="module")
def server(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``nbp serve`` in a subprocess on a free loopback port; stopped with SIGTERM."""
    port = _free_port()
    env = {**os.environ, "NBP_HOME": str(built.ws.home), "NBP_TOKENS": built.tokens_env}
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nbp.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"nbp serve exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:]
                pytest.fail(f"nbp serve not ready after {START_TIMEOUT_S} s:\n{tail}")
            time.sleep(0.5)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_nbp_serve_answers_probes_and_hints(server: str, built: Built) -> None:
    assert httpx.get(f"{server}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server}/readyz").json()
    assert ready["ready"] is True and ready["products"]["consumer"]["ready"] is True
    r = httpx.post(f"{server}/hints", json={"customer_id": built.customer}, headers=bearer("marketing"), timeout=30)
    assert r.status_code == 200 and r.json()["customer_id"] == built.customer
    r = httpx.post(f"{server}/hints", json={"customer_id": built.customer}, timeout=30)
    assert r.status_code == 401 and "Traceback" not in r.text
    page = httpx.get(f"{server}/staff/")
    assert page.status_code == 200 and "客户号" in page.text


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium browser installed (apt-get install chromium)")
def test_staff_page_shows_hints_in_chinese(server: str, built: Built, tmp_path: Path) -> None:
    dom = _page_dom(f"{server}/staff/#token={TOKENS['branch']}&customer={built.customer}", tmp_path)
    assert f"客户 {built.customer}" in dom
    assert 'class="product"' in dom or 'class="product off"' in dom
    assert '<ul class="reasons"><li>' in dom  # reasons rendered (not just present in the script)
    assert "<h3>1. " in dom  # the best product is numbered 1
    assert "模型暂不可用" in dom  # tax_linked has no champion in the fixture
    assert TOKENS["branch"] not in dom  # the token left the URL and the page


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium browser installed (apt-get install chromium)")
def test_staff_page_refuses_another_branch(server: str, built: Built, tmp_path: Path) -> None:
    dom = _page_dom(f"{server}/staff/#token={TOKENS['branch']}&customer={built.other_customer}", tmp_path)
    assert "无权查看该客户（仅可查看本支行客户）" in dom.split("<script>")[0]
    assert '<ul class="reasons">' not in dom
