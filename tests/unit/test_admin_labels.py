"""Every form control on every admin page reachable by links has a label: a wrapping <label>, a <label for>,
or an aria-label (hidden inputs and buttons aside)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from flask.testing import FlaskClient

from pooler.context import CoreContext
from pooler.services.seed import seed
from tests.support.admin import *  # noqa: F403
from tests.support.admin import Auth

HREF = re.compile(r'href="(/admin/[^"#]*)"')
SKIP = ("/logout", "/static/", "export.csv")


class Controls(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.open_labels = 0
        self.label_for: set[str] = set()
        self.controls: list[tuple[str, dict[str, str | None], bool]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "label":
            self.open_labels += 1
            if found.get("for"):
                self.label_for.add(str(found["for"]))
        elif tag in ("input", "select", "textarea") and found.get("type") not in ("hidden", "submit"):
            self.controls.append((tag, found, self.open_labels > 0))

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self.open_labels = max(0, self.open_labels - 1)

    def unlabelled(self) -> list[str]:
        return [
            f"<{tag} name={attrs.get('name')!r}>"
            for tag, attrs, wrapped in self.controls
            if not wrapped and not attrs.get("aria-label") and attrs.get("id") not in self.label_for
        ]


def test_every_control_is_labelled(auth: Auth, client: FlaskClient, core_ctx: CoreContext) -> None:
    with core_ctx.session_factory.begin() as session:
        data = seed(session, core_ctx.box, core_ctx.hasher, requests=40)
    auth.bootstrap()
    auth.login()
    seen: set[str] = set()
    queue = ["/admin/", "/admin/accounts/import", "/admin/onboarding/link", "/admin/pools/new"]
    queue += [f"/admin/accounts/{i}" for i in list(data.accounts.values())[:3]]
    missing: dict[str, list[str]] = {}
    while queue and len(seen) < 120:
        path = queue.pop(0).replace("&amp;", "&")
        if path in seen or any(s in path for s in SKIP):
            continue
        seen.add(path)
        response = client.get(path)
        if response.status_code != 200 or response.mimetype != "text/html":
            continue
        html = response.get_data(as_text=True)
        parser = Controls()
        parser.feed(html)
        if bad := parser.unlabelled():
            missing[path] = bad
        queue.extend(HREF.findall(html))
    assert len(seen) > 20
    assert not missing, "\n".join(f"{path}: {bad}" for path, bad in missing.items())
