"""FHIR search: the parameter registry and the write-time extraction of search values.

https://hl7.org/fhir/R4/search.html
"""

from ehr.search.extract import (
    DateValue,
    IndexValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
    extract,
)
from ehr.search.normalize import normalize_string, parse_fhir_date, parse_reference
from ehr.search.registry import SearchParam, get_param, params_for, patient_compartment_params

__all__ = [
    "DateValue",
    "IndexValue",
    "NumberValue",
    "QuantityValue",
    "ReferenceValue",
    "SearchParam",
    "StringValue",
    "TokenValue",
    "UriValue",
    "extract",
    "get_param",
    "normalize_string",
    "params_for",
    "parse_fhir_date",
    "parse_reference",
    "patient_compartment_params",
]
