"""OperationOutcome, the FHIR error and information resource (https://hl7.org/fhir/R4/operationoutcome.html)."""

from __future__ import annotations

from dataclasses import dataclass, field

# HTTP status -> IssueType code, used when an error carries no code of its own.
_DEFAULT_CODE = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
                 406: "not-supported", 409: "conflict", 410: "deleted", 412: "conflict", 413: "too-costly",
                 415: "not-supported", 422: "processing", 500: "exception"}


@dataclass(frozen=True, slots=True)
class Issue:
    code: str
    diagnostics: str
    expression: list[str] = field(default_factory=list)
    severity: str = "error"

    def as_json(self) -> dict:
        out: dict = {"severity": self.severity, "code": self.code, "diagnostics": self.diagnostics}
        if self.expression:
            out["expression"] = list(self.expression)
        return out


def outcome(*issues: Issue) -> dict:
    return {"resourceType": "OperationOutcome", "issue": [i.as_json() for i in issues]}


def error_outcome(message: str, *, status: int = 400, code: str | None = None,
                  expression: list[str] | None = None) -> dict:
    return outcome(Issue(code or _DEFAULT_CODE.get(status, "processing"), message, expression or []))


def information(message: str) -> dict:
    return outcome(Issue("informational", message, severity="information"))
