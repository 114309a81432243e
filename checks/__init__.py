"""The checks: one module per check, each defining ``CHECK`` (listed in mkdoctor.registry)."""
