"""The `digitnet` command: one subcommand per job, flags built from the settings."""
