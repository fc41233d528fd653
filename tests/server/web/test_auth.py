"""Web sign-in: scrypt passwords, the session cookie, CSRF refusals, the login rate limit, sign-up."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from auth_helpers import PASSWORD, add_web_user, csrf_of, http_login, signed_in_client, unique, web_client
from huggingface_hub import HfApi

from hubfs.cli import main
from hubfs.errors import TooManyRequestsError
from hubfs.server.app import create_app
from hubfs.server.hub import Hub
from hubfs.server.web.passwords import PasswordStore, hash_password, verify_password
from hubfs.server.web.session import LoginLimiter

# -- passwords --------------------------------------------------------------------------------------


def test_password_hash_is_salted_scrypt_with_its_parameters() -> None:
    a, b = hash_password("s3cret-words"), hash_password("s3cret-words")
    assert a != b  # a salt per hash
    scheme, n, r, p, salt, key = a.split("$")
    assert (scheme, int(n), int(r), int(p)) == ("scrypt", 1 << 15, 8, 1) and salt and key
    assert verify_password("s3cret-words", a) and verify_password("s3cret-words", b)
    assert not verify_password("s3cret-wordz", a)
    cheap = hash_password("another-one", n=1 << 10)  # parameters are read back from the hash
    assert verify_password("another-one", cheap)
    for broken in ("", "scrypt$1$2", "bcrypt$x$y$z$a$b", a.replace("$8$", "$x$"), "scrypt$4194304$8$1$AA$AA"):
        assert not verify_password("s3cret-words", broken)


def test_password_rules() -> None:
    with pytest.raises(ValueError, match="at least 8"):
        hash_password("short")
    with pytest.raises(ValueError, match="at most"):
        hash_password("x" * 2000)


def test_cli_sets_and_changes_passwords(hub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    user, token = add_web_user(hub, cli=True)
    assert HfApi(endpoint=hub.endpoint, token=token).whoami()["name"] == user
    store = PasswordStore(hub.data_dir / "hub.sqlite")
    assert store.check(user, PASSWORD) and not store.check(user, "not the password")
    client = signed_in_client(hub, user)
    assert client.get("/settings/tokens").status_code == 200
    new = tmp_path / "new"
    new.write_text("a brand new password\n")
    assert "password of" in hub.cli("user", "passwd", user, "--password-file", str(new))
    assert store.check(user, "a brand new password") and not store.check(user, PASSWORD)
    assert client.get("/settings/tokens").status_code == 303  # the password change ended the session
    too_short = tmp_path / "short"
    too_short.write_text("abc\n")
    data = ["--data", str(hub.data_dir)]
    assert main(["user", "passwd", user, "--password-file", str(too_short), *data]) == 1
    assert "at least 8" in capsys.readouterr().err
    assert main(["user", "passwd", unique("nobody"), "--password-file", str(new), *data]) == 1
    assert "No user named" in capsys.readouterr().err
    assert main(["user", "add", unique("pw"), "--password-file", str(too_short), *data]) == 1


# -- sessions ---------------------------------------------------------------------------------------


def test_session_cookie_flags_and_sign_out(hub) -> None:
    user, _ = add_web_user(hub)
    client = web_client(hub)
    r = http_login(client, user)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert "hubfs_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http on loopback
    home = client.get("/")
    assert home.status_code == 200 and user in home.text and 'action="/logout"' in home.text
    # The session authenticates pages only: the API never reads the cookie.
    assert client.get("/api/whoami-v2").status_code == 401
    stolen = dict(client.cookies)
    r = client.post("/logout", data={"csrf_token": csrf_of(home.text)})
    assert r.status_code == 303
    assert client.get("/settings/tokens").status_code == 303
    replay = web_client(hub)
    replay.cookies.update(stolen)  # the old cookie is dead on the server too
    assert replay.get("/settings/tokens").status_code == 303


def test_forged_or_tampered_cookie_is_anonymous(hub) -> None:
    user, _ = add_web_user(hub)
    client = signed_in_client(hub, user)
    value = client.cookies["hubfs_session"]
    for bad in (value[:-1] + ("0" if value[-1] != "0" else "1"), "x.y", "garbage", value.split(".")[0]):
        other = web_client(hub)
        other.cookies.set("hubfs_session", bad)
        assert other.get("/settings/tokens").status_code == 303


def test_wrong_password_and_unknown_user_read_the_same(hub) -> None:
    user, _ = add_web_user(hub)
    a = http_login(web_client(hub), user, "not my password")
    b = http_login(web_client(hub), unique("ghost"), "not my password")
    assert a.status_code == b.status_code == 401
    assert "Wrong user name or password." in a.text and "Wrong user name or password." in b.text
    assert "hubfs_session" not in a.headers.get("set-cookie", "")


def test_login_redirects_only_to_local_paths(hub) -> None:
    user, _ = add_web_user(hub)
    for target, expected in (("/settings/tokens", "/settings/tokens"), ("https://evil.example/", "/"),
                             ("//evil.example/x", "/"), ("/\\evil.example", "/")):
        client = web_client(hub)
        page = client.get("/login")
        r = client.post("/login", data={"username": user, "password": PASSWORD, "next": target,
                                        "csrf_token": csrf_of(page.text)})
        assert r.status_code == 303 and r.headers["location"] == expected, target


def test_secure_cookie_over_https(tmp_path: Path) -> None:
    """Served over https (here: the ASGI app called with an https URL), the cookies are Secure."""
    hub = Hub(tmp_path / "hub")
    hub.bootstrap()
    hub.add_user("carol")
    PasswordStore(hub.data_dir / "hub.sqlite").set_password("carol", PASSWORD)
    app = create_app(hub)

    async def run() -> tuple[str, str]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://hub.test") as client:
            page = await client.get("/login")
            r = await client.post("/login", data={"username": "carol", "password": PASSWORD,
                                                  "csrf_token": csrf_of(page.text)})
            assert r.status_code == 303
            return page.headers["set-cookie"], r.headers["set-cookie"]

    csrf_cookie, session_cookie = asyncio.run(run())
    assert "hubfs_csrf=" in csrf_cookie and "Secure" in csrf_cookie and "HttpOnly" in csrf_cookie
    assert "hubfs_session=" in session_cookie and "Secure" in session_cookie


# -- CSRF -------------------------------------------------------------------------------------------


def test_forms_without_a_valid_csrf_token_are_refused(hub) -> None:
    user, _ = add_web_user(hub)
    anon = web_client(hub)
    anon.get("/login")
    r = anon.post("/login", data={"username": user, "password": PASSWORD})
    assert r.status_code == 403 and "CSRF" in r.text and "text/html" in r.headers["content-type"]
    # A token from another browser (bound to its cookie) does not fit this one.
    other = web_client(hub)
    foreign = csrf_of(other.get("/login").text)
    r = anon.post("/login", data={"username": user, "password": PASSWORD, "csrf_token": foreign})
    assert r.status_code == 403
    client = signed_in_client(hub, user)
    for path, fields in (("/logout", {}), ("/settings/tokens", {"name": "x", "role": "write"}),
                         ("/new", {"name": unique("m"), "owner": user})):
        r = client.post(path, data={**fields, "csrf_token": "forged"})
        assert r.status_code == 403, path
        r = client.post(path, data=fields)
        assert r.status_code == 403, path
    assert client.get("/settings/tokens").status_code == 200  # still signed in
    assert "x" not in [t.split()[0] for t in hub.cli("token", "list", user).splitlines()[1:] if t]


# -- rate limit -------------------------------------------------------------------------------------


def test_login_attempts_are_rate_limited_per_user(tmp_hub) -> None:
    hub = tmp_hub()
    user, _ = add_web_user(hub)
    other, _ = add_web_user(hub)
    client = web_client(hub)
    for _ in range(5):
        assert http_login(client, user, "wrong password").status_code == 401
    r = http_login(client, user)  # the right password, but too late
    assert r.status_code == 429 and "Too many failed sign-ins" in r.text
    assert http_login(web_client(hub), other).status_code == 303  # another user still signs in


def test_limiter_counts_per_user_and_per_address_and_stays_bounded() -> None:
    lim = LoginLimiter(per_user=3, per_address=5, window=0.3, max_keys=50)
    for i in range(3):
        lim.check("amy", "1.1.1.1")
        lim.failed("amy", "1.1.1.1")
    with pytest.raises(TooManyRequestsError):
        lim.check("amy", "2.2.2.2")  # per user, from any address
    lim.check("bob", "1.1.1.1")
    lim.failed("bob", "1.1.1.1")
    lim.failed("cid", "1.1.1.1")
    with pytest.raises(TooManyRequestsError):
        lim.check("dan", "1.1.1.1")  # per address, for any user
    time.sleep(0.35)
    lim.check("amy", "1.1.1.1")  # the window passed
    for i in range(500):
        lim.failed(f"user{i}", f"10.0.{i // 256}.{i % 256}")
    assert len(lim._fails) <= 50


# -- sign-up ----------------------------------------------------------------------------------------


def test_signup_is_off_by_default(hub) -> None:
    client = web_client(hub)
    assert client.get("/join").status_code == 404
    token = csrf_of(client.get("/login").text)
    r = client.post("/join", data={"username": unique("new"), "password": PASSWORD, "password2": PASSWORD,
                                   "csrf_token": token})
    assert r.status_code == 404
    assert "/join" not in client.get("/login").text


def test_signup_when_allowed(tmp_hub) -> None:
    hub = tmp_hub("--allow-signup")
    client = web_client(hub)
    assert 'href="/join"' in client.get("/login").text
    name = unique("new")

    def join(username: str, pw: str = PASSWORD, pw2: str = PASSWORD) -> httpx.Response:
        page = client.get("/join")
        assert page.status_code == 200
        return client.post("/join", data={"username": username, "password": pw, "password2": pw2,
                                          "csrf_token": csrf_of(page.text)})

    assert join(name, pw2="something else").status_code == 400
    assert join(name, "short", "short").status_code == 400
    assert join("models").status_code == 400 and join("login").status_code == 400
    assert join("admin").status_code == 409
    r = join(name)
    assert r.status_code == 303 and "hubfs_session" in r.headers["set-cookie"]
    assert client.get("/settings/tokens").status_code == 200
    assert http_login(web_client(hub), name).status_code == 303


def test_form_helpers() -> None:
    from hubfs.server.web.forms import parse_form, safe_next

    assert parse_form(b"a=1&b=x+y&a=2&empty=") == {"a": "2", "b": "x y", "empty": ""}
    with pytest.raises(ValueError):
        parse_form(b"\xff=1")
    for value, expected in (("/models?x=1", "/models?x=1"), (None, "/"), ("", "/"), ("http://e.x/", "/"),
                            ("//e.x", "/"), ("/\\e.x", "/"), ("javascript:alert(1)", "/")):
        assert safe_next(value) == expected
