"""HimHIS platform shell: configuration, database, application factory and command line."""
