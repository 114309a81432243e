"""Step 12: where everything is."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mkdoctor.wizard import writers

if TYPE_CHECKING:
    from mkdoctor.wizard.flow import Flow


def run(f: Flow) -> None:
    st = f.state
    f.step("Done")
    prof = st.profile_written
    paths = writers.frontend_paths(prof.name)
    if st.verify_error:
        f.say(f"  NOT WORKING AS WRITTEN: {st.verify_error}")
    else:
        f.say(f"  checked as written: {', '.join(st.verified)} passed"
              + (f"; {st.carried} proven in step 9 (the same ssh -G)" if st.carried else ""))
    f.say(f"  profile:        {writers.profile_file(prof.name)}")
    f.say(f"  ssh alias:      {st.alias} in {f.ssh_config_path()}")
    f.say(f"  front end:      {paths['text']}")
    f.say(f"                  (or evaluate {paths['install']})")
    f.say(f"  parallel:       {paths['parallel']}")
    f.say("  In the front end: Evaluation > Notebook's Kernel > " + prof.name)
    f.say(f"  Re-check any time: mkdoctor --profile {prof.name}   "
             f"(mkdoctor config show --profile {prof.name} prints the strings)")
