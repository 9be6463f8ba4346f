"""The web app serves plotly.js's gl3d partial bundle in place of Dash's full one (gateway.web.asgi.PlotlyBundle):
gzipped, revalidated by ETag, cached for a year only under a fingerprinted URL; everything else still goes
to the dashboard."""

from __future__ import annotations

import gzip
from typing import Any

from starlette.testclient import TestClient

from gateway.web.asgi import PlotlyBundle, WebApp

FINGERPRINTED = "/_dash-component-suites/plotly/package_data/plotly.v7_1_0m1796184948.min.js"
PLAIN = "/_dash-component-suites/plotly/package_data/plotly.min.js"


def _dashboard(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"dash:" + environ["PATH_INFO"].encode()]


async def _api(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def test_the_gl3d_bundle_replaces_the_full_one() -> None:
    bundle = PlotlyBundle.load()
    assert bundle is not None, "viz/vendor/plotly-gl3d.min.js is missing or not the plotly.js plotly expects"
    assert len(bundle.body) < 2_500_000  # the full bundle is 4.8 MB
    app = WebApp(_api, _dashboard)
    with TestClient(app) as client:
        r = client.get(FINGERPRINTED, headers={"Accept-Encoding": "gzip"})
        assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
        assert r.content == bundle.body  # (the client undoes the gzip)
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert r.headers["content-type"].startswith("application/javascript")
        assert int(r.headers["content-length"]) == len(gzip.compress(bundle.body, 6, mtime=0)) < 800_000
        again = client.get(FINGERPRINTED, headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        plain = client.get(PLAIN, headers={"Accept-Encoding": "identity"})
        assert plain.status_code == 200 and "content-encoding" not in plain.headers
        assert plain.headers["cache-control"] == "public, max-age=3600"  # no fingerprint: revalidated hourly
        assert client.post(PLAIN).status_code == 405
        assert client.get("/_dash-component-suites/dash/dcc/async-graph.js").text.startswith("dash:")
    with TestClient(WebApp(_api, _dashboard, plotly_gl3d=False)) as client:
        assert client.get(FINGERPRINTED).text.startswith("dash:")  # the full bundle, from Dash


def test_a_bundle_of_another_version_is_not_served(tmp_path: Any) -> None:
    stale = tmp_path / "plotly-gl3d.min.js"
    stale.write_bytes(b"/**\n* plotly.js (gl3d - minified) v0.0.1\n*/\n")
    assert PlotlyBundle.load(stale) is None
    assert PlotlyBundle.load(tmp_path / "missing.js") is None
