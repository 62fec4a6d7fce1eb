"""The master patient index: likely duplicates of a patient, patient search, and merging two records."""
