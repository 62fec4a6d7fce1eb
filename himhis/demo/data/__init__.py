"""Data files of the demo generator (a package only so that setuptools ships the CSV/JSON files)."""
