"""Web interface fixtures: one headless Chromium for the session, and a model repo with a card,
folders, an image, an HTML file and an LFS file (plus the XSS cases) that the page tests browse.

Chromium and its driver come from Debian (``chromium``, ``chromium-driver``; scripts/test.sh installs
them); selenium drives them. ``browser_login(driver, base_url, user, password)`` lives in
``auth_helpers.py`` (the sign-in part's helpers).
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("HUBFS_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("HUBFS_CHROMEDRIVER", "/usr/bin/chromedriver")

XSS_CARD = """\
<script>alert('card-script')</script>
<a href="javascript:alert('js-link')">js link</a>
<img src="x.png" onerror="alert('onerror')">
<svg onload="alert('svg-onload')"><script>alert('svg-script')</script></svg>
<div onclick="alert('onclick')" style="position:fixed">styled</div>
<iframe src="javascript:alert('iframe')"></iframe>
<form action="/logout" method="post"><button>form</button></form>

[md-js](javascript:alert('md-js'))
"""

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201a9d1e5"
    "e30000000049454e44ae426082")


@dataclass(frozen=True)
class WebRepo:
    """A public model of admin's that the web tests browse; ``files`` maps paths to bytes."""

    repo_id: str
    tag: str
    files: dict[str, bytes]


def card_text(tag: str) -> str:
    return (f"---\nlicense: mit\nlanguage:\n- fr\n- en\nlibrary_name: transformers\npipeline_tag: fill-mask\n"
            f"tags:\n- {tag}\ndatasets:\n- admin/some-data\n---\n\n# Web test model\n\nSome **bold** text. "
            f"![logo](images/logo.png) See [the config](config.json).\n\n{XSS_CARD}")


@pytest.fixture(scope="session")
def web_repo(hub: Any) -> WebRepo:
    """admin/web-XXXX: README (card + XSS cases), config.json, images/logo.png, page.html, an LFS
    model.safetensors and 25 files in data/; two commits."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(endpoint=hub.endpoint, token=hub.admin_token)
    tag = f"webtag{uuid.uuid4().hex[:8]}"
    rid = f"admin/web-{uuid.uuid4().hex[:8]}"
    api.create_repo(rid)
    files = {
        "README.md": card_text(tag).encode(),
        "config.json": b'{"model_type": "bert", "note": "<b>not bold</b>"}\n',
        "images/logo.png": PNG,
        "page.html": b"<html><script>alert('html-file')</script><p>hi</p></html>\n",
        "model.safetensors": os.urandom(200_000),
    }
    files.update({f"data/part-{i:03d}.txt": f"row {i}\n".encode() for i in range(25)})
    api.create_commit(rid, [CommitOperationAdd(p, io.BytesIO(files[p])) for p in ("config.json", "images/logo.png")],
                      commit_message="Add config and logo")
    api.create_commit(rid, [CommitOperationAdd(p, io.BytesIO(b)) for p, b in files.items()
                            if p not in ("config.json", "images/logo.png")],
                      commit_message="Add the card, weights and data")
    return WebRepo(rid, tag, files)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium (Debian's) for the whole session, 1280x900; ``driver.download_dir`` is the
    folder its downloads land in."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail(f"Chromium and chromedriver are needed at {CHROMIUM} and {CHROMEDRIVER} "
                    "(apt-get install chromium chromium-driver; scripts/test.sh does it)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    profile = Path(tempfile.mkdtemp(prefix="hubfs-chromium-"))
    downloads = profile / "downloads"
    downloads.mkdir()
    options.add_argument(f"--user-data-dir={profile / 'profile'}")
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    driver.download_dir = downloads  # where clicked downloads land (tests empty it as they need)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
