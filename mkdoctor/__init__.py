"""mkdoctor: checks every link between a Mathematica front end and a remote kernel over SSH.

This package holds the check engine (``engine``), the check model (``model``), the
registry of checks (``registry``), the OpenSSH layer (``openssh``), the reports
(``reports``) and the ``mkdoctor`` command (``cli``); the checks themselves
(``mkdoctor.checks``, the repository's ``checks/``) and the setup flow
(``mkdoctor.wizard``, the repository's ``wizard/``) are mapped in by pyproject.toml. Keep this module import-free:
``mkdoctor --version`` and ``--help`` must start fast.
"""

__version__ = "0.1.0"
