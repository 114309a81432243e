"""mkdoctor: checks every link between a Mathematica front end and a remote kernel over SSH.

This package holds the check engine (``engine``), the check model (``model``), the
registry of checks (``registry``), the checks themselves (``catalogue``), the reports
(``reports``) and the ``mkdoctor`` command (``cli``). Keep this module import-free:
``mkdoctor --version`` and ``--help`` must start fast.
"""

__version__ = "0.1.0"
