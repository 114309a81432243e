"""Moved to :mod:`mkdoctor.frontend` (the front end's files: below both the checks and
the setup flow, so MK501 does not import the wizard). Kept so ``mkdoctor.wizard.wl``
still imports."""

from mkdoctor.frontend import *  # noqa: F401,F403
from mkdoctor.frontend import STRING_RE, parse_wl_string  # noqa: F401
