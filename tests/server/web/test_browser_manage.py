"""Managing repos in a real browser (Debian's headless Chromium driven by selenium): sign in, create a
repo, upload a folder with a large file through the file input, edit the card, make a token and
use it with HfApi, and the gated flow with two users."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from auth_helpers import add_web_user, browser_login, page_replaced, unique
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import GatedRepoError
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

WAIT = 30


def _wait_url(driver: Any, suffix: str) -> None:
    WebDriverWait(driver, WAIT).until(lambda d: d.current_url.split("?", 1)[0].endswith(suffix))


def _submit(driver: Any, button_id: str) -> None:
    """Click a form's button and wait until the next page replaced this one."""
    page = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.ID, button_id).click()
    WebDriverWait(driver, WAIT).until(page_replaced(page))


def _fill(driver: Any, element_id: str, text: str) -> None:
    el = driver.find_element(By.ID, element_id)
    el.clear()
    el.send_keys(text)


@pytest.fixture(scope="module")
def people(hub) -> dict[str, str]:
    owner, owner_token = add_web_user(hub)
    bob, bob_token = add_web_user(hub)
    return {"owner": owner, "owner_token": owner_token, "bob": bob, "bob_token": bob_token}


def _create_model(driver: Any, base: str, owner: str) -> str:
    driver.get(f"{base}/new")
    name = unique("ui")
    _fill(driver, "name", name)
    _submit(driver, "create-submit")
    _wait_url(driver, f"/{owner}/{name}")
    return f"{owner}/{name}"


def test_create_upload_folder_edit_card(browser, hub, people, tmp_path: Path) -> None:
    base, owner = hub.endpoint, people["owner"]
    browser_login(browser, base, owner)
    repo_id = _create_model(browser, base, owner)
    api = HfApi(endpoint=base, token=people["owner_token"])
    assert api.model_info(repo_id).private is False

    folder = tmp_path / "checkpoint"
    (folder / "sub").mkdir(parents=True)
    big = os.urandom(11 << 20)  # an LFS object
    (folder / "model.bin").write_bytes(big)
    (folder / "sub" / "config.json").write_text('{"layers": 2}')
    browser.get(f"{base}/{repo_id}/upload/main")
    form = browser.find_element(By.ID, "upload-form")
    assert form.get_attribute("data-js") == "on"  # static/upload.js ran under the page's CSP
    browser.find_element(By.ID, "folder").send_keys(str(folder))
    _fill(browser, "summary", "Upload a checkpoint")
    browser.save_screenshot(str(tmp_path / "upload-page.png"))
    browser.find_element(By.ID, "upload-submit").click()  # upload.js: XHR with progress, then the tree
    _wait_url(browser, f"/{repo_id}/tree/main")
    assert sorted(api.list_repo_files(repo_id)) == [".gitattributes", "checkpoint/model.bin",
                                                    "checkpoint/sub/config.json"]
    assert api.list_repo_commits(repo_id)[0].title == "Upload a checkpoint"
    info = api.get_paths_info(repo_id, ["checkpoint/model.bin"])[0]
    assert info.lfs is not None and info.lfs.size == len(big)
    got = hf_hub_download(repo_id, "checkpoint/model.bin", endpoint=base, token=people["owner_token"],
                          cache_dir=tmp_path / "cache")
    assert Path(got).read_bytes() == big

    browser.get(f"{base}/{repo_id}/edit/main/README.md")
    _fill(browser, "content", "---\nlicense: [1, 2]\n---\n# Bad\n")
    _submit(browser, "commit-submit")
    WebDriverWait(browser, WAIT).until(ec.presence_of_element_located((By.ID, "card-errors")))
    assert api.model_info(repo_id).card_data is None
    _fill(browser, "content", "---\nlicense: apache-2.0\n---\n# Browser card\n\nWritten in **Chromium**.\n")
    _submit(browser, "preview-submit")
    preview = WebDriverWait(browser, WAIT).until(ec.presence_of_element_located((By.ID, "card-preview")))
    assert "Written in Chromium." in preview.text
    _submit(browser, "commit-submit")
    _wait_url(browser, f"/{repo_id}")
    assert api.model_info(repo_id).card_data["license"] == "apache-2.0"


def test_token_made_in_the_browser_works_with_hfapi(browser, hub, people) -> None:
    base = hub.endpoint
    browser_login(browser, base, people["owner"])
    browser.get(f"{base}/settings/tokens")
    _fill(browser, "token-name", unique("ci"))
    browser.find_element(By.ID, "role-write").click()
    _submit(browser, "token-create")
    token = WebDriverWait(browser, WAIT).until(ec.presence_of_element_located((By.ID, "new-token"))).text
    who = HfApi(endpoint=base, token=token).whoami()
    assert who["name"] == people["owner"] and who["auth"]["accessToken"]["role"] == "write"
    browser.refresh()  # a reload (GET) never shows it again
    assert token not in browser.page_source


def test_gated_flow_with_two_users(browser, hub, people, tmp_path: Path) -> None:
    base, owner, bob = hub.endpoint, people["owner"], people["bob"]
    browser_login(browser, base, owner)
    repo_id = _create_model(browser, base, owner)
    HfApi(endpoint=base, token=people["owner_token"]).upload_file(
        path_or_fileobj=b"gated bytes", path_in_repo="w.bin", repo_id=repo_id)
    browser.get(f"{base}/{repo_id}/settings")
    browser.find_element(By.ID, "gated-manual").click()
    _submit(browser, "gating-submit")
    WebDriverWait(browser, WAIT).until(ec.presence_of_element_located((By.ID, "settings-notice")))

    def bob_download() -> bytes:
        return Path(hf_hub_download(repo_id, "w.bin", endpoint=base, token=people["bob_token"],
                                    cache_dir=tmp_path / unique("c"))).read_bytes()

    with pytest.raises(GatedRepoError):
        bob_download()
    browser_login(browser, base, bob)
    browser.get(f"{base}/{repo_id}/access")
    _submit(browser, "agree-access")
    status = WebDriverWait(browser, WAIT).until(ec.presence_of_element_located((By.ID, "access-status")))
    assert "pending" in status.text
    with pytest.raises(GatedRepoError):
        bob_download()

    browser_login(browser, base, owner)
    browser.get(f"{base}/{repo_id}/settings")
    _submit(browser, f"accept-{bob}")
    WebDriverWait(browser, WAIT).until(ec.presence_of_element_located((By.ID, "requests-accepted")))
    assert bob in browser.find_element(By.ID, "requests-accepted").text
    assert bob_download() == b"gated bytes"


DROP = """
const [names, sizes] = arguments;
const dt = new DataTransfer();
names.forEach((name, i) => dt.items.add(new File([new Uint8Array(sizes[i]).fill(7)], name)));
const zone = document.getElementById("dropzone");
zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: dt, bubbles: true, cancelable: true}));
zone.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
"""


def test_drag_and_drop_upload_is_one_commit(browser, hub, people) -> None:
    """Files dropped on the page (a DataTransfer, as a drag from the desktop makes) go in one commit."""
    base, owner = hub.endpoint, people["owner"]
    browser_login(browser, base, owner)
    repo_id = _create_model(browser, base, owner)
    browser.get(f"{base}/{repo_id}/upload/main")
    browser.execute_script(DROP, ["dropped.bin", "notes.md"], [3 << 20, 100])
    WebDriverWait(browser, WAIT).until(lambda d: "2 file(s) ready" in d.find_element(By.ID, "upload-status").text)
    assert "dropped.bin" in browser.find_element(By.ID, "dropped").text
    browser.find_element(By.ID, "upload-submit").click()
    _wait_url(browser, f"/{repo_id}/tree/main")
    api = HfApi(endpoint=base, token=people["owner_token"])
    assert sorted(api.list_repo_files(repo_id)) == [".gitattributes", "dropped.bin", "notes.md"]
    assert len(api.list_repo_commits(repo_id)) == 2
