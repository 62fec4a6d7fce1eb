"""HL7 v2 interfaces: lab results over MLLP into the FHIR record (see ``mllp``, ``service``)."""
