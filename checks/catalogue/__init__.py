"""The checks: one module per check, each defining ``CHECK`` (see checks.registry)."""
