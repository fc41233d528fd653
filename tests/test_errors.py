"""One exception hierarchy: Hub error codes map onto built-in exceptions."""

from __future__ import annotations

from hubfs import errors


def test_codes_map_to_builtins() -> None:
    assert isinstance(errors.error_for(404, "RepoNotFound", "x"), FileNotFoundError)
    assert isinstance(errors.error_for(404, "EntryNotFound", "x"), errors.EntryNotFoundError)
    assert isinstance(errors.error_for(403, "GatedRepo", "x"), PermissionError)
    assert isinstance(errors.error_for(409, None, "x"), FileExistsError)
    assert isinstance(errors.error_for(400, "BadRequest", "x"), ValueError)
    assert isinstance(errors.error_for(501, "NotImplemented", "x"), NotImplementedError)
    err = errors.error_for(418, None, "teapot")
    assert type(err) is errors.HubfsError and err.status == 418 and str(err) == "teapot"


def test_status_follows_the_answer() -> None:
    assert errors.error_for(401, "RepoNotFound", "x").status == 401
    assert errors.RepoNotFoundError("x").status == 404
