"""Helpers for the web tests: users with web passwords, a signed-in HTTP client, a signed-in browser."""

from __future__ import annotations

import re
import tempfile
import uuid
from pathlib import Path
from typing import Any

import httpx

PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def add_web_user(hub: Any, name: str | None = None, password: str = PASSWORD, org: str | None = None,
                 role: str = "write", *, cli: bool = False) -> tuple[str, str]:
    """Create a user with a web password; returns (name, token). ``cli``: through ``hubfs user add
    --password-file`` and ``hubfs token create``; else straight into the hub's SQLite file (the same
    stores the CLI writes, safe beside the running server, and much faster than two processes)."""
    name = name or unique("web")
    if cli:
        with tempfile.TemporaryDirectory() as tmp:
            f = Path(tmp) / "pw"
            f.write_text(password + "\n")
            hub.cli("user", "add", name, "--password-file", str(f), *(["--org", org] if org else []))
        return name, hub.cli("token", "create", name, "--role", role)
    from hubfs.server.metadata import Metadata
    from hubfs.server.web.passwords import PasswordStore

    sqlite = Path(hub.data_dir) / "hub.sqlite"
    meta = Metadata(sqlite)
    meta.add_account(name)
    if org:
        meta.ensure_org(org)
        meta.add_member(org, name)
    PasswordStore(sqlite).set_password(name, password)
    return name, meta.create_token(name, f"{name}-{role}", role)


def csrf_of(html: str) -> str:
    """The first CSRF token of a page's forms."""
    m = _CSRF.search(html)
    assert m, "no csrf_token field on this page"
    return m.group(1)


def web_client(hub: Any) -> httpx.Client:
    """A cookie-keeping client of the hub's pages (no redirects followed, no token)."""
    return httpx.Client(base_url=hub.endpoint, follow_redirects=False, timeout=60)


def http_login(client: httpx.Client, user: str, password: str = PASSWORD) -> httpx.Response:
    """Sign ``client`` in through the /login form; returns the form's answer (303 on success)."""
    page = client.get("/login")
    assert page.status_code == 200, page.text
    return client.post("/login", data={"username": user, "password": password, "csrf_token": csrf_of(page.text),
                                       "next": "/"})


def signed_in_client(hub: Any, user: str, password: str = PASSWORD) -> httpx.Client:
    client = web_client(hub)
    r = http_login(client, user, password)
    assert r.status_code == 303, r.text
    return client


def post_form(client: httpx.Client, page_path: str, to: str | None = None, **fields: str) -> httpx.Response:
    """GET ``page_path``, then POST ``fields`` (plus the page's CSRF token) to ``to`` (default: the same path)."""
    page = client.get(page_path)
    assert page.status_code == 200, (page.status_code, page.text[:500])
    return client.post(to or page_path, data={"csrf_token": csrf_of(page.text), **fields})


def browser_login(driver: Any, base_url: str, user: str, password: str = PASSWORD) -> None:
    """Sign the selenium ``driver`` in through the /login page (and wait until it left it)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.delete_all_cookies()
    driver.get(f"{base_url}/login")
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login-submit").click()
    WebDriverWait(driver, 20).until(ec.presence_of_element_located((By.CSS_SELECTOR, "form[action='/logout']")))


def page_replaced(page: Any) -> Any:
    """A WebDriverWait condition: the element ``page`` (a page's ``html``) is gone, the next page loaded.
    Like selenium's ``staleness_of``, but also taking chromedriver's "Node with given id does not belong to
    the document" (what newer drivers say instead of a stale element while a page is being replaced)."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    def gone(_driver: Any) -> bool:
        try:
            page.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if "does not belong to the document" in str(exc):
                return True
            raise
        return False

    return gone
