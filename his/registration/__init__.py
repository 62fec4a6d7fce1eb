"""Patient registration at a facility: the form, its checks, the UHID and the stored FHIR Patient."""
