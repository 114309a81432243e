"""``python -m mkdoctor`` runs the ``mkdoctor`` command."""

import sys

from mkdoctor.cli import main

sys.exit(main())
