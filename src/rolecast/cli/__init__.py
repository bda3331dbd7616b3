"""The ``rolecast`` command: thin wrappers that parse, call the library and print."""
