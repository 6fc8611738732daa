"""The staff page's customer profile in headless Chromium, against ``nbp serve`` for real.

``NBP_SCREENSHOT_DIR=docs pytest tests/serving/test_profile_page.py`` also writes the README's
screenshot (``docs/staff-profile.png``); without it the screenshot goes to the test's temporary folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from servingkit import TOKENS, Built
from test_service_http import CHROMIUM, _chromium, _page_dom, server  # noqa: F401 - server: the module's fixture

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium browser installed (apt-get install chromium)"),
]

PNG = b"\x89PNG\r\n\x1a\n"


def _screenshot(url: str, out: Path, tmp_path: Path) -> None:
    """A PNG of the page once its scripts ran (headless chromium, as ``_page_dom``)."""
    _chromium(tmp_path, "shot-profile", "--hide-scrollbars", "--window-size=960,1500", f"--screenshot={out}", url)


def test_profile_card_shows_tier_sparklines_and_holdings(server: str, built: Built, tmp_path: Path) -> None:  # noqa: F811
    url = f"{server}/staff/#token={TOKENS['branch']}&customer={built.customer}"
    dom = _page_dom(url, tmp_path)
    levels = "|".join(lv.zh for lv in built.cfg.tiers.levels)
    assert re.search(rf'<span id="tier" class="tier tier-\d"[^>]*>({levels}) [↑↓→]', dom), dom[:2000]
    assert "综合贡献度 " in dom and "客龄 " in dom and "最近联系记录" in dom
    sparks = re.findall(r'<svg class="sparkline"[^>]*>.*?</svg>', dom, flags=re.S)
    assert len(sparks) == 2 and all("<polyline" in s for s in sparks)
    assert 'class="chip chip-' in dom  # held products and services as chips
    assert "<h3>1. " in dom and '<ul class="reasons"><li>' in dom  # the products below, as before
    assert TOKENS["branch"] not in dom
    shots = Path(os.environ.get("NBP_SCREENSHOT_DIR") or tmp_path)
    out = shots / "staff-profile.png"
    _screenshot(url, out, tmp_path)
    assert out.read_bytes()[:8] == PNG and out.stat().st_size > 20_000


def test_profile_of_another_branch_is_refused(server: str, built: Built, tmp_path: Path) -> None:  # noqa: F811
    dom = _page_dom(f"{server}/staff/#token={TOKENS['branch']}&customer={built.other_customer}", tmp_path)
    assert "无权查看该客户（仅可查看本支行客户）" in dom.split("<script>")[0]
    assert '<svg class="sparkline"' not in dom and 'id="result" hidden' in dom
