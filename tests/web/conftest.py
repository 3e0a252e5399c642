"""Fixtures of the dashboard tests: the browser (Debian's chromium driven by
npm's playwright-core, installed on demand by ``infra.browser``; the page's
build of clients/js, by ``infra.dashboard``) and the fake
gateway the page is developed against."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from infra.browser import Browser, BrowserUnavailable, ensure_browser
from infra.dashboard import DashboardUnbuilt, ensure_dashboard_client
from tests.web.fake_gateway import FakeGateway, serve_fake


@pytest.fixture(scope="session")
def browser() -> Browser:
    try:
        # The page runs on clients/js's build: current with its source.
        ensure_dashboard_client()
        return ensure_browser()
    except (BrowserUnavailable, DashboardUnbuilt) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"no browser for the dashboard tests: {exc}")
        pytest.skip(f"no browser for the dashboard tests: {exc}")


@pytest.fixture
def fake() -> Iterator[tuple[FakeGateway, str]]:
    with serve_fake() as served:
        yield served
