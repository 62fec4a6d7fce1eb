"""The CapabilityStatement at /fhir/metadata (https://hl7.org/fhir/R4/capabilitystatement.html).

Built from what the server really does: the interactions in ``ehr/routes.py``, the search
parameters of the registry, and the identity provider's token endpoint.
"""

from __future__ import annotations

from functools import lru_cache

from ehr.search import registry
from ehr.search.query import _BUILDERS
from ehr.validation import is_resource_type
from himhis.config import Settings
from identity.policy import policy

INTERACTIONS = ["read", "vread", "update", "delete", "history-instance", "history-type", "create",
                "search-type"]


@lru_cache(maxsize=4)
def _resources() -> tuple[dict, ...]:
    out = []
    for rtype in sorted(t for t in registry.resource_types() if is_resource_type(t)):
        params = [{"name": "_id", "type": "token"}, {"name": "_lastUpdated", "type": "date"}]
        params += [{"name": p.code, "type": p.type, "definition": p.url}
                   for p in sorted(registry.params_for(rtype).values(), key=lambda p: p.code)
                   if (p.type in _BUILDERS and not p.code.startswith("_")) or p.code in ("_tag", "_profile",
                                                                                         "_security", "_source")]
        res = {"type": rtype, "interaction": [{"code": c} for c in INTERACTIONS], "versioning": "versioned",
               "readHistory": True, "updateCreate": True, "conditionalCreate": True,
               "conditionalUpdate": True, "conditionalDelete": "single",
               "conditionalRead": "not-supported", "referencePolicy": ["literal", "logical", "enforced"],
               "searchParam": params}
        if rtype == "Patient":
            res["operation"] = [{"name": "everything",
                                 "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}]
        out.append(res)
    return tuple(out)


def capability_statement(settings: Settings, base: str) -> dict:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-24",
        "publisher": "HimHIS, Government of Himachal Pradesh",
        "kind": "instance",
        "software": {"name": "HimHIS", "version": "0.1.0"},
        "implementation": {"description": "HimHIS FHIR R4 record store", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["json", "application/fhir+json"],
        "rest": [{
            "mode": "server",
            "security": {
                "cors": False,
                "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                         "code": "OAuth"}]}],
                "description": "OpenID Connect bearer tokens (RS256) from the issuer "
                               f"{settings.oidc_issuer}; audience {settings.oidc_audience}. "
                               "Every interaction except /metadata requires a token. What each role may do:\n"
                               + policy().describe(),
                "extension": [{"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                               "extension": [{"url": "token",
                                              "valueUri": f"{settings.oidc_issuer}/protocol/openid-connect/token"},
                                             {"url": "authorize",
                                              "valueUri": f"{settings.oidc_issuer}/protocol/openid-connect/auth"}]}],
            },
            "resource": list(_resources()),
            "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
            "operation": [{"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"}],
        }],
    }
