"""`gridtwin serve` puts the dashboard and the REST API on one port."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from gateway.cli import sample_community_path
from gateway.ops.procs import free_port
from gateway.settings import Settings
from gateway.storage import Storage
from gateway.web.composition import start_dashboard
from twin.community import parse

pytestmark = pytest.mark.integration


def test_dashboard_and_api_share_the_server(settings: Settings) -> None:
    assert settings.db.url
    community = parse(sample_community_path().read_text(encoding="utf-8"))
    with Storage.connect(settings.db.url, schema=settings.db.schema_name) as st:
        st.migrate()
        st.load_community(community)
    handle = start_dashboard(settings, community, settings.db.url, None, port=free_port())
    base = f"http://127.0.0.1:{handle.server_port}"
    try:
        with urllib.request.urlopen(f"{base}/api/v1/openapi.json", timeout=10) as r:
            spec = json.loads(r.read())
        assert "/api/v1/tickets" in spec["paths"]
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{base}/api/v1/tickets", timeout=10)
        e.value.close()
        assert e.value.code == 401  # no token: refused, not a 500
        with urllib.request.urlopen(f"{base}/", timeout=10) as r:
            page = r.read().decode()
        assert "<html" in page.lower()
    finally:
        handle.shutdown()
