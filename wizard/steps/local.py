"""Step 1: this computer (MK1xx, MK2xx)."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from mkdoctor.wizard.flow import StepFailed

if TYPE_CHECKING:
    from mkdoctor.wizard.flow import Flow


def run(f: Flow) -> None:
    st = f.state
    f.step("This computer (MK1xx, MK2xx)")
    opts = copy.copy(f.opts)
    # what a later step of this wizard fixes is said so, not given as a command to type
    f.fixed_later = {"MK202": "step 4 offers to create a key (or choose another one)",
                        "MK203": "step 8 proposes two free link ports"}
    try:
        res = f.run_checks([f"MK{n}" for n in (101, 102, 103, 201, 202, 203, 204, 205)],
                              opts, None)
    finally:
        f.fixed_later = {}
    if res["MK201"].status.value in ("fail", "error"):
        raise StepFailed(f"{res['MK201'].summary}; fix: {res['MK201'].fix}")
    st.local = res
