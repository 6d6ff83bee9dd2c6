"""The ``deployhook`` command and its subcommands."""
