"""HimParivar, the state's family register: its API client, the extract importer and the synthetic register."""
