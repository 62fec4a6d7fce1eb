"""One error model: domain exceptions carry their HTTP status and are rendered in one place."""

from __future__ import annotations


class HimHISError(Exception):
    """Base of every error that becomes an HTTP answer.

    ``code`` is a FHIR IssueType code (http://hl7.org/fhir/R4/valueset-issue-type.html);
    ``expression`` the FHIRPath of the offending element, where there is one.
    """

    status: int = 400
    code: str = "invalid"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 expression: list[str] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.expression = expression or []
        self.headers = headers or {}


class AuthenticationError(HimHISError):
    status = 401
    code = "login"

    def __init__(self, message: str = "Authentication required", **kw) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="himhis"'})
        super().__init__(message, **kw)


class ForbiddenError(HimHISError):
    status = 403
    code = "forbidden"


class NotFoundError(HimHISError):
    status = 404
    code = "not-found"


class GoneError(HimHISError):
    status = 410
    code = "deleted"


class ConflictError(HimHISError):
    status = 409
    code = "conflict"


class PreconditionFailedError(HimHISError):
    status = 412
    code = "conflict"


class InvalidError(HimHISError):
    status = 400
    code = "invalid"


class UnprocessableError(HimHISError):
    status = 422
    code = "processing"


class TooLargeError(HimHISError):
    status = 413
    code = "too-costly"
