"""The browsing pages in a real headless Chromium: search with each facet, open a card, browse to a
file and download it (bytes compared), untrusted content inert (no dialog, no script), phone width.

Screenshots of the search page and the repo page are saved in each test's tmp folder (printed)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from auth_helpers import page_replaced
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def assert_no_dialog(driver: Any) -> None:
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018 - reading it is the check


def inert(driver: Any) -> None:
    """No dialog opened, and the page holds no script, event handler or javascript: link."""
    assert_no_dialog(driver)
    found = driver.execute_script(
        "return [document.querySelectorAll('script:not([src^=\"/static/\"])').length,"
        " document.querySelectorAll('[onerror],[onload],[onclick],[ontoggle]').length,"
        " document.querySelectorAll('a[href^=\"javascript\"], iframe, svg, object, embed').length]")
    assert found == [0, 0, 0]


def follow(driver: Any, element: Any, submit: bool = False) -> None:
    """Click a link (or submit a form) and wait until the next page replaced this one."""
    page = driver.find_element(By.TAG_NAME, "html")
    element.submit() if submit else element.click()
    WebDriverWait(driver, 30).until(page_replaced(page))


def query_of(driver: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(driver.current_url).query)


def test_search_with_each_facet(hub: Any, browser: Any, web_repo: Any, tmp_path: Path) -> None:
    browser.set_window_size(1280, 900)
    browser.get(f"{hub.endpoint}/models?other={web_repo.tag}")
    assert [a.text for a in browser.find_elements(By.CSS_SELECTOR, "a.repo-name")] == [web_repo.repo_id]
    for facet, value in (("pipeline_tag", "fill-mask"), ("language", "fr"), ("library", "transformers"),
                         ("license", "mit")):
        follow(browser, browser.find_element(By.CSS_SELECTOR, f'[data-facet="{facet}"] a[data-value="{value}"]'))
        assert query_of(browser)[facet] == [value]
        assert browser.find_element(By.CSS_SELECTOR, f'[data-facet="{facet}"] a.selected').get_attribute(
            "data-value") == value
        assert web_repo.repo_id in [a.text for a in browser.find_elements(By.CSS_SELECTOR, "a.repo-name")]
    assert set(query_of(browser)) >= {"other", "pipeline_tag", "language", "library", "license"}
    # The search box keeps the filters; a name that matches nothing empties the list.
    box = browser.find_element(By.ID, "q")
    box.send_keys("no-such-model-anywhere")
    follow(browser, box, submit=True)
    assert query_of(browser)["license"] == ["mit"] and browser.find_elements(By.CSS_SELECTOR, "a.repo-name") == []
    browser.get(f"{hub.endpoint}/models?other={web_repo.tag}&sort=name")
    shot = tmp_path / "search.png"
    browser.save_screenshot(str(shot))
    print(f"search page screenshot: {shot}")
    assert shot.stat().st_size > 5000
    inert(browser)


def test_open_card_browse_and_download(hub: Any, browser: Any, web_repo: Any, tmp_path: Path) -> None:
    browser.set_window_size(1280, 900)
    browser.get(f"{hub.endpoint}/models?other={web_repo.tag}")
    follow(browser, browser.find_element(By.LINK_TEXT, web_repo.repo_id))
    assert browser.find_element(By.CSS_SELECTOR, ".markdown h1").text == "Web test model"
    assert browser.execute_script("return document.querySelector('.markdown img').naturalWidth") == 1  # via resolve
    chips = {a.text for a in browser.find_elements(By.CSS_SELECTOR, ".chips a")}
    assert any("fill-mask" in c for c in chips)
    shot = tmp_path / "repo.png"
    browser.save_screenshot(str(shot))
    print(f"repo page screenshot: {shot}")
    inert(browser)
    follow(browser, browser.find_element(By.LINK_TEXT, "Files and versions"))
    follow(browser, browser.find_element(By.CSS_SELECTOR, 'tr.dir a[href$="/tree/main/data"]'))
    assert len(browser.find_elements(By.CSS_SELECTOR, "tr.file")) == 25
    follow(browser, browser.find_element(By.LINK_TEXT, ".."))
    follow(browser, browser.find_element(By.LINK_TEXT, "config.json"))
    assert '"model_type": "bert"' in browser.find_element(By.CSS_SELECTOR, "pre.text").text
    browser.get(f"{hub.endpoint}/{web_repo.repo_id}/tree/main")
    follow(browser, browser.find_element(By.LINK_TEXT, "model.safetensors"))
    assert "Git LFS" in browser.page_source
    for old in browser.download_dir.iterdir():
        old.unlink()
    browser.find_element(By.ID, "download").click()
    target = browser.download_dir / "model.safetensors"
    deadline = time.time() + 30
    while time.time() < deadline and not (target.exists() and target.stat().st_size == 200_000):
        time.sleep(0.1)
    assert target.read_bytes() == web_repo.files["model.safetensors"]


def test_untrusted_files_inert_and_phone_width(hub: Any, browser: Any, web_repo: Any, tmp_path: Path) -> None:
    rid = web_repo.repo_id
    browser.set_window_size(1280, 900)
    browser.get(f"{hub.endpoint}/{rid}/blob/main/page.html")
    assert "<script>alert('html-file')</script>" in browser.find_element(By.CSS_SELECTOR, "pre.text").text
    inert(browser)
    browser.get(f"{hub.endpoint}/{rid}/resolve/main/page.html")  # the raw file, opened directly: sandboxed
    assert_no_dialog(browser)
    browser.set_window_size(390, 844)
    try:
        for path in (f"/{rid}", f"/{rid}/tree/main", "/models"):
            browser.get(f"{hub.endpoint}{path}")
            overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, (path, overflow)
        browser.save_screenshot(str(tmp_path / "search-phone.png"))
    finally:
        browser.set_window_size(1280, 900)


def test_private_repo_invisible_to_a_second_user_and_anonymous(hub: Any, browser: Any, users: dict[str, str]) -> None:
    import io
    import uuid

    from auth_helpers import add_web_user, browser_login
    from huggingface_hub import HfApi

    mark = uuid.uuid4().hex[:8]
    owner, owner_token = add_web_user(hub)
    secret = f"{owner}/hidden-{mark}"
    api = HfApi(endpoint=hub.endpoint, token=owner_token)
    api.create_repo(secret, private=True)
    api.upload_file(path_or_fileobj=io.BytesIO(f"---\nlicense: mit\ntags: [t{mark}]\n---\n# secret\n".encode()),
                    path_in_repo="README.md", repo_id=secret)
    other, _ = add_web_user(hub)
    browser.set_window_size(1280, 900)
    for who in ("anonymous", other, owner):
        if who == "anonymous":
            browser.delete_all_cookies()
        else:
            browser_login(browser, hub.endpoint, who)
            assert browser.find_element(By.CSS_SELECTOR, "a.me").text == who
        for path in (f"/models?search={mark}", f"/models?other=t{mark}", f"/{owner}"):
            browser.get(f"{hub.endpoint}{path}")
            listed = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "a.repo-name")]
            assert (secret in listed) == (who == owner), (who, path)
            if who != owner:
                assert f"hidden-{mark}" not in browser.page_source and f"t{mark}" not in browser.find_element(
                    By.CSS_SELECTOR, "aside.facets" if "models" in path else "main").text
        browser.get(f"{hub.endpoint}/{secret}/tree/main")
        assert (browser.find_elements(By.CSS_SELECTOR, "table.files") != []) == (who == owner), who
    browser.delete_all_cookies()
