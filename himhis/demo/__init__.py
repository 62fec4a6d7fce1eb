"""Demo data for ``himhis seed-demo``: deterministic FHIR R4 Bundles for IGMC Shimla and RPGMC Tanda."""

from himhis.demo.generator import generate

__all__ = ["generate"]
