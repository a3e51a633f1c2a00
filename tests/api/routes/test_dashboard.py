"""The dashboard's page, static files and vocabulary endpoint (the page itself is driven in a
real browser by tests/e2e)."""

from __future__ import annotations

import re

from api.routes.dashboard import STATIC_DIR
from shared.data.schema import FEATURE_COLUMNS, MISSING, VOCABULARY
from tests.api.conftest import Api


def test_the_page_is_served_at_the_root_with_a_same_origin_policy(api: Api) -> None:
    response = api.client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/static/js/app.js">' in response.text
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert response.headers["cache-control"] == "no-cache"


def test_static_files_are_served_and_revalidated(api: Api) -> None:
    modules = sorted(f"/static/js/{p.name}" for p in (STATIC_DIR / "js").glob("*.js"))
    assert len(modules) > 10  # one module per panel, plus the shared ones
    for path, media_type in [
        *((module, "text/javascript") for module in modules),
        ("/static/dashboard.css", "text/css"),
        ("/static/favicon.svg", "image/svg+xml"),
    ]:
        response = api.client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith(media_type), path
        assert response.headers["cache-control"] == "no-cache"
    missing = api.client.get("/static/nope.js")
    assert missing.status_code == 404


def test_static_files_load_nothing_from_elsewhere() -> None:
    """No CDN, no web font, no absolute URL: the SVG namespace is the only one, and it is a
    name, never fetched."""
    for path in STATIC_DIR.rglob("*"):
        if path.is_file():
            text = path.read_text()
            urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"'`)]*", text))
            assert urls <= {"http://www.w3.org/2000/svg"}, (path, urls)
            assert "@import" not in text and "@font-face" not in text, path


def test_vocabulary_lists_cdc_values_in_order(api: Api) -> None:
    response = api.client.get("/vocabulary")
    assert response.status_code == 200
    body = response.json()
    assert body["columns"] == list(FEATURE_COLUMNS)
    assert body["values"] == {column: list(VOCABULARY[column]) for column in FEATURE_COLUMNS}
    assert body["required"] == ["age_group"]
    assert body["missing"] == MISSING


def test_the_page_is_not_an_api_operation_but_the_vocabulary_is(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    assert "/" not in paths
    assert "/vocabulary" in paths
    assert not any(path.startswith("/static") for path in paths)


def test_every_module_import_resolves_to_an_exported_name() -> None:
    """No build step checks the ES modules, so this does: each ``import {a, b} from "./x.js"``
    names a file that exists and exports a and b."""
    sources = {p.name: p.read_text() for p in (STATIC_DIR / "js").glob("*.js")}
    for name, text in sources.items():
        for names, target in re.findall(r"import\s*\{([^}]*)\}\s*from\s*\"\./([\w.]+)\"", text):
            assert target in sources, f"{name} imports a missing module {target}"
            exported = set(
                re.findall(
                    r"^export\s+(?:async\s+)?(?:function|const|let|class)\s+([\w$]+)",
                    sources[target],
                    re.M,
                )
            )
            for item in names.split(","):
                wanted = item.strip().split(" as ")[0].strip()
                if wanted:
                    assert wanted in exported, f"{name} imports {wanted} that {target} lacks"
