"""$validate (https://hl7.org/fhir/R4/resource-operation-validate.html).

Answers 200 with an OperationOutcome whether or not the resource is valid, as the operation defines;
checks the same rules a create or update would, without storing anything.
"""

from __future__ import annotations

from ehr.outcome import Issue, outcome
from ehr.service import FhirStore
from ehr.validation import ResourceInvalid, validate_resource
from himhis.errors import HimHISError, InvalidError


def validate_operation(store: FhirStore, res_type: str, body: dict, res_id: str | None) -> dict:
    resource = body
    mode = None
    if body.get("resourceType") == "Parameters":
        params = {p.get("name"): p for p in body.get("parameter") or []}
        if "resource" not in params:
            raise InvalidError("Parameters for $validate must carry a 'resource' parameter", code="required")
        resource = params["resource"].get("resource") or {}
        mode = (params.get("mode") or {}).get("valueCode")
    try:
        validate_resource(resource, expected_type=res_type)
        if res_id is not None and resource.get("id") not in (None, res_id):
            raise InvalidError(f"The resource id '{resource.get('id')}' does not match '{res_id}'",
                               expression=[f"{res_type}.id"])
        if mode == "delete":
            store.read(res_type, res_id or "")
        else:
            allowed = {(res_type, resource["id"])} if resource.get("id") else set()
            store.check_references([(res_type, resource)], allowed=allowed)
    except ResourceInvalid as exc:
        return outcome(*exc.issues)
    except HimHISError as exc:
        return outcome(Issue(exc.code, exc.message, exc.expression))
    return outcome(Issue("informational", "No issues found: the resource is valid", severity="information"))
