"""``python -m checks`` runs the ``mkdoctor`` command."""

import sys

from checks.cli import main

sys.exit(main())
