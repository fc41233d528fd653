"""One exception hierarchy for hubfs, client and server alike.

Every error carries the Hub's ``X-Error-Code`` and the HTTP status the embedded hub answers with.
Each class also derives from the built-in exception a caller would naturally catch
(``FileNotFoundError``, ``PermissionError``, ``FileExistsError``, ``ValueError``), the way
``s3fs/errors.py`` maps S3 codes, so ``except FileNotFoundError`` works on any not-found.
"""

from __future__ import annotations

import errno


class HubfsError(Exception):
    """Base of every hubfs error. ``code`` is the Hub's X-Error-Code, ``status`` the HTTP status."""

    code: str = "HubError"
    status: int = 500

    def __init__(self, message: str = "", *, status: int | None = None) -> None:
        super().__init__(message or self.__class__.__doc__ or self.code)
        self.message = message or (self.__class__.__doc__ or self.code).strip()
        if status is not None:
            self.status = status

    def __str__(self) -> str:
        return self.message


class BadRequestError(HubfsError, ValueError):
    """The request is malformed."""

    code, status = "BadRequest", 400


class InvalidNameError(BadRequestError):
    """A repo id, revision or path in repo is not valid."""

    code = "InvalidName"


class IntegrityError(BadRequestError):
    """Uploaded content does not match its declared hash or size."""

    code = "IntegrityError"


class AuthenticationError(HubfsError, PermissionError):
    """Missing or invalid credentials."""

    code, status = "Unauthorized", 401


class PermissionDeniedError(HubfsError, PermissionError):
    """The caller is authenticated but may not do this."""

    code, status = "Forbidden", 403


class GatedRepoError(HubfsError, PermissionError):
    """The repo is gated and the caller has not been granted access."""

    code, status = "GatedRepo", 403


class CsrfError(PermissionDeniedError):
    """A web form was posted without a valid CSRF token."""

    code = "CsrfFailed"


class NotFoundError(HubfsError, FileNotFoundError):
    """Something does not exist."""

    code, status = "NotFound", 404


class RepoNotFoundError(NotFoundError):
    """The repository does not exist, or the caller may not see it."""

    code = "RepoNotFound"


class RevisionNotFoundError(NotFoundError):
    """The branch, tag, PR ref or commit does not exist."""

    code = "RevisionNotFound"


class EntryNotFoundError(NotFoundError):
    """The file or folder does not exist at this revision."""

    code = "EntryNotFound"


class ConflictError(HubfsError, FileExistsError):
    """The thing to create already exists, or conflicts with what exists."""

    code, status = "Conflict", 409


class PreconditionFailedError(HubfsError):
    """The branch moved: the expected parent commit is no longer its head."""

    code, status = "PreconditionFailed", 412


class PayloadTooLargeError(HubfsError):
    """The request body, or one part of it, is larger than the server accepts."""

    code, status = "PayloadTooLarge", 413


class RangeNotSatisfiableError(HubfsError):
    """The requested byte range starts past the end of the file."""

    code, status = "RangeNotSatisfiable", 416


class TooManyRequestsError(HubfsError):
    """Too many attempts (e.g. failed web sign-ins): wait before trying again."""

    code, status = "TooManyRequests", 429


class HubNotImplementedError(HubfsError, NotImplementedError):
    """This Hub endpoint is not implemented by this server."""

    code, status = "NotImplemented", 501


class OfflineModeError(HubfsError, ConnectionError):
    """HF_HUB_OFFLINE is set and the answer is not in the local cache."""

    code, status = "Offline", 0


class OfflineEntryNotFoundError(OfflineModeError, FileNotFoundError):
    """HF_HUB_OFFLINE is set and this path is not in the cached snapshot (it may exist on the hub)."""

    code, status = "Offline", 0


class ServiceUnavailableError(HubfsError, ConnectionError):
    """The hub cannot answer now (its metadata database is unreachable); retry shortly."""

    code, status = "ServiceUnavailable", 503


class HubConnectionError(HubfsError, ConnectionError):
    """The hub could not be reached, or kept failing after retries."""

    code, status = "ConnectionError", 0


class CacheFullError(HubfsError, OSError):
    """The disk holding the local cache is full (``errno`` is ENOSPC); nothing partial was kept."""

    code, status = "CacheFull", 0

    def __init__(self, folder: str, needed: int | None, free: int | None = None, what: str = "") -> None:
        sizes = ", ".join(([f"{needed} bytes needed"] if needed is not None else [])
                          + ([f"{free} free"] if free is not None else []))
        super().__init__(f"No space left in the cache folder {folder}{' for ' + what if what else ''}"
                         f"{': ' + sizes if sizes else ''}. Free some space (e.g. `hubfs cache rm`) and retry.")
        self.errno, self.strerror, self.filename = errno.ENOSPC, self.message, folder
        self.folder, self.needed, self.free = folder, needed, free


class MountError(HubfsError):
    """A mount could not be made or undone (bad mount point, no FUSE, the daemon failed to start)."""

    code, status = "MountError", 0


class LfsTransferError(HubfsError):
    """An LFS download or upload of git-remote-hf failed (batch refused, object missing, bytes wrong)."""

    code, status = "LfsTransferError", 0


class SafetensorsError(HubfsError, ValueError):
    """A safetensors file or its index is malformed (the message names the file, the tensor and the problem)."""

    code, status = "SafetensorsError", 0


class ModelLoadError(HubfsError, ValueError):
    """A checkpoint does not fit the model it is loaded into (shapes, missing or unexpected keys, config)."""

    code, status = "ModelLoadError", 0


_BY_CODE: dict[str, type[HubfsError]] = {
    cls.code: cls
    for cls in (
        BadRequestError,
        InvalidNameError,
        IntegrityError,
        AuthenticationError,
        PermissionDeniedError,
        GatedRepoError,
        NotFoundError,
        RepoNotFoundError,
        RevisionNotFoundError,
        EntryNotFoundError,
        ConflictError,
        PreconditionFailedError,
        PayloadTooLargeError,
        RangeNotSatisfiableError,
        HubNotImplementedError,
    )
}

_BY_STATUS: dict[int, type[HubfsError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    412: PreconditionFailedError,
    413: PayloadTooLargeError,
    416: RangeNotSatisfiableError,
    501: HubNotImplementedError,
}


def error_for(status: int, code: str | None, message: str) -> HubfsError:
    """Build the exception a Hub answer (status, X-Error-Code, message) stands for."""
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(status) or HubfsError
    return cls(message, status=status)


_LOCAL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EISDIR, errno.ENOTDIR, errno.EBADF,
                           errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EPERM, errno.ENOTSUP,
                           # what a read-write mount's staging area raises (hubfs.mount.staging)
                           errno.ENOTEMPTY, errno.EEXIST, errno.EINVAL, errno.EXDEV, errno.ENAMETOOLONG, errno.EFBIG,
                           errno.EBUSY})


def errno_for(exc: BaseException) -> int:
    """The ``errno`` a filesystem call should fail with for ``exc`` (the mount's one mapping): not found
    ENOENT, no permission EACCES, a full cache ENOSPC, an invalid name EINVAL, a closed handle EBADF, the
    local errors of the staging area as they are (EEXIST, ENOTEMPTY, EINVAL, EXDEV, EISDIR, ENOTDIR, ...);
    an unreachable hub, a truncated body, a timeout or any other failure EIO (never a hang or a crash)."""
    if isinstance(exc, OfflineModeError) and not isinstance(exc, FileNotFoundError):
        return errno.EIO
    if isinstance(exc, OSError) and not isinstance(exc, HubfsError) and exc.errno in _LOCAL_ERRNOS:
        return exc.errno  # a local failure says what it is (an EPERM is no EACCES)
    if isinstance(exc, FileNotFoundError):
        return errno.ENOENT
    if isinstance(exc, PermissionError):
        return errno.EACCES
    if isinstance(exc, CacheFullError):
        return errno.ENOSPC
    if isinstance(exc, InvalidNameError):
        return errno.EINVAL
    if isinstance(exc, HubfsError):
        return errno.EIO
    if isinstance(exc, ValueError) and "closed file" in str(exc):
        return errno.EBADF
    return errno.EIO
