"""The verification notebook: the link checked from inside, by the real kernel.

mkdoctor cannot run Mathematica; this notebook, opened in the front end after the setup
and evaluated once (Evaluation > Evaluate Notebook), checks what only the real front end
and kernel can show, and says in words what to fix:

1. which machine evaluates it: the kernel's ``$MachineName``, and whether its
   ``SystemInformation["Kernel", "MachineID"]`` equals the front end's
   (``SystemInformation["FrontEnd", "MachineID"]``): equal means a kernel on this laptop
   answered, not the remote one (the comparison sakra/Tunnel's tunnel.m makes, observed);
2. a ``Dynamic`` round trip: a ``Dynamic[Refresh[..., UpdateInterval -> 0.5]]`` whose
   every evaluation counts up a kernel variable — the front end evaluates Dynamic in the
   kernel (reference.wolfram.com/language/ref/Dynamic.html, ref/Refresh.html);
3. a preemptive evaluation: the counter must go on while the main link is busy
   (``Pause[4]``): Dynamic evaluations that arrive during another evaluation come over the
   front end's preemptive link (docs/guides/dynamic.md says what is known about it);
4. the kernel's view of its links (``$ParentLink``, ``Links[]``, ``$CommandLine``), to
   quote in a report: which ports the extra links use is not documented for 12-14.

The notebook's ``Evaluator`` option names the kernel entry the setup wrote (the profile's
name), so it is evaluated by that kernel (reference.wolfram.com/language/ref/Evaluator.html).
Every profile value is written as a Wolfram Language string literal (``wl_string``): a
host name cannot break out of it. Input cells hold their code as a string (a Cell's first
argument may be a string, reference.wolfram.com/language/ref/Cell.html); that the front
end parses such an Input cell's text when it is evaluated, as it does for typed input, is
observed, not documented.

Nothing in it changes a setting or writes a file.
"""

from __future__ import annotations

from mkdoctor.profile import Profile
from mkdoctor.wizard.wl import wl_comment, wl_string

# The Input cells' code. {EXPECTED}, {NAME}, {MODE} and {PORTS} are replaced by string
# literals; no other brace is a placeholder.
CELL_WHO = """\
mkExpected = {EXPECTED}; mkMode = {MODE}; mkPorts = {PORTS};
mkInfo = <|
  "kernel machine" -> $MachineName,
  "kernel version" -> $Version,
  "kernel process" -> $ProcessID,
  "same machine as the front end" ->
    TrueQ[SystemInformation["Kernel", "MachineID"] === SystemInformation["FrontEnd", "MachineID"]],
  "parent link" -> ToString[$ParentLink],
  "links" -> (ToString /@ Links[]),
  "command line" -> StringRiffle[$CommandLine, " "]
|>;
Dataset[mkInfo]"""

CELL_DYNAMIC = """\
mkTicks = 0;
Dynamic[Refresh[mkTicks++; Row[{"Dynamic evaluations in the kernel so far: ", mkTicks}],
  UpdateInterval -> 0.5, TrackedSymbols :> {}]]"""

CELL_PREEMPT = """\
mkBefore = mkTicks; Pause[4]; mkDuring = mkTicks - mkBefore;
Row[{"Dynamic evaluations while this cell was busy: ", mkDuring}]"""

CELL_VERDICT = """\
mkSay[ok_, text_] := Style[Row[{If[ok, "\\[Checkmark] ", "\\[WarningSign] "], text}],
  If[ok, Darker[Green], Red]];
mkShort[s_String] := ToLowerCase[First[StringSplit[s, "."], s]];
mkIsAddress = StringMatchQ[mkExpected, (DigitCharacter | "." | ":" | HexadecimalCharacter) ..];
Column[{
  If[mkInfo["same machine as the front end"],
    mkSay[False, "This notebook was evaluated by a kernel on this computer, not on " <>
      mkExpected <> ". Choose Evaluation > Notebook's Kernel > " <> {NAME} <>
      " and evaluate the notebook again. If that kernel is missing, evaluate the install file the setup wrote, or run: mkdoctor setup"],
    If[mkIsAddress || mkShort[mkInfo["kernel machine"]] === mkShort[mkExpected],
      mkSay[True, "The kernel runs on " <> mkInfo["kernel machine"] <> " (" <> mkInfo["kernel version"] <> ")."],
      mkSay[True, "The kernel runs on " <> mkInfo["kernel machine"] <> ", not on this computer (the profile names " <>
        mkExpected <> ": an alias or a cluster node can differ)."]]],
  Which[
    mkTicks == 0,
      mkSay[False, "Dynamic never reached the kernel: the front end's extra links (preemptive and service) do not connect. In " <>
        mkMode <> " mode the link ports are " <> mkPorts <> ". Run mkdoctor --profile " <> {NAME} <>
        " and mkdoctor explain \\"Dynamic\\"; if every check passes, try direct mode on a LAN or VPN to tell a tunnel limit from a broken setup, and report the links line above."],
    mkDuring == 0,
      mkSay[False, "Dynamic works only while the kernel is idle: nothing arrived during a busy evaluation, so the preemptive link is missing. Sliders and Manipulate will freeze during long evaluations. Report the links line above with your Mathematica version."],
    True,
      mkSay[True, "Dynamic round trips work, also while the kernel is busy (preemptive evaluation: " <>
        ToString[mkDuring] <> " updates in 4 s)."]],
  Row[{"Links as the kernel sees them: ", mkInfo["links"]}]
}]"""


def _cell(code: str, fill: dict[str, str]) -> str:
    for key, value in fill.items():
        code = code.replace("{" + key + "}", value)
    return f"Cell[{wl_string(code)}, \"Input\"]"


def _text(text: str, style: str = "Text") -> str:
    return f"Cell[{wl_string(text)}, {wl_string(style)}]"


def verification_notebook(profile: Profile) -> str:
    """The notebook expression (a ``.nb`` file's text) for ``profile``."""
    expected = profile.hostname or profile.host
    fill = {
        "EXPECTED": wl_string(expected),
        "NAME": wl_string(profile.name),
        "MODE": wl_string(profile.mode),
        "PORTS": wl_string(",".join(str(p) for p in profile.link_ports)),
    }
    cells = [
        _text(f"mkdoctor: check the link to {expected} from inside", "Title"),
        _text(f"Profile {profile.name}, {profile.mode} mode, link ports "
              f"{','.join(str(p) for p in profile.link_ports)}. Evaluate this notebook once "
              "(Evaluation > Evaluate Notebook) and wait about ten seconds: the last cell says "
              "what works and what to fix. It changes no setting and writes no file."),
        _text("1. Which machine evaluates this notebook", "Section"),
        _cell(CELL_WHO, fill),
        _text("2. A Dynamic round trip: the counter below counts evaluations in the kernel", "Section"),
        _cell(CELL_DYNAMIC, fill),
        _text("3. A preemptive evaluation: the counter must go on while this cell is busy", "Section"),
        _cell(CELL_PREEMPT, fill),
        _text("4. What works and what to fix", "Section"),
        _cell(CELL_VERDICT, fill),
    ]
    body = ",\n ".join(cells)
    return (f"(* Written by mkdoctor for profile {wl_comment(profile.name)}: open it in the "
            "front end and evaluate it once. *)\n"
            f"Notebook[{{\n {body}\n}},\n Evaluator -> {wl_string(profile.name)},\n"
            f" WindowTitle -> {wl_string('mkdoctor check: ' + profile.name)}]\n")
