"""The ``safeguard`` command: thin verbs over the library (see :mod:`safeguard.cli.main`)."""
