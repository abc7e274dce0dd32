"""The verdicts of a claims file, as a person reads them in a terminal and as JSON."""

from __future__ import annotations

import json
import re

from derive.claims import Report
from derive.spec import LayeredSpec
from derive.errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_REFUTED, shown
from derive.verdict import Verdict


def json_text(data) -> str:
    """JSON whose strings escape every character a terminal would act on (json.dumps leaves C1 and bidi controls raw)."""
    text = json.dumps(data, indent=2, ensure_ascii=False)
    return re.sub(r"[^\n -~]", lambda m: m.group() if m.group().isprintable() else json.dumps(m.group())[1:-1], text)


def _spec_line(report: Report) -> str:
    s = report.spec
    if isinstance(s, LayeredSpec):
        from derive.report.layers import layer_line, shape_text

        parts = [s.name, f"inputs {shape_text(s.shape)}", " → ".join(layer_line(b) for b in s.layers), f"{s.cost} cost",
                 f"{s.convention} convention",
                 f"batch {s.batch}" + (f" of {s.examples} examples" if s.batch != "single" else "")]
        return f"{report.path}: " + ", ".join(parts) + (f"; {report.note}" if report.note else "")
    parts = [f"{s.name}", "-".join(map(str, s.sizes)), ", ".join(dict.fromkeys(s.activation)), f"{s.cost} cost",
             f"{s.convention} convention", f"bias {s.bias}",
             f"batch {s.batch}" + (f" of {s.examples} example{'s' if s.examples > 1 else ''}" if s.batch != "single" else "")]
    line = f"{report.path}: " + ", ".join(parts)
    return line + (f"; {report.note}" if report.note else "")


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _entries_text(entries: list[dict], shown: int = 8) -> str:
    text = ", ".join(f"[{e['entry'][0]},{e['entry'][1]}] {e['name']}" for e in entries[:shown])
    return text + (f", ... ({len(entries) - shown} more in --json)" if len(entries) > shown else "")


def render(report: Report, console) -> None:
    from rich.text import Text

    styles = {Verdict.PROVEN: "green", Verdict.REFUTED: "red", Verdict.UNPROVEN: "yellow", Verdict.ERROR: "magenta"}
    pad = " " * 10

    def out(text: str, style: str = "") -> None:
        """One line of the report; what came from the file cannot move the cursor or start a line of its own."""
        console.print(Text(shown(text, pad), style=style), soft_wrap=True)

    out(_spec_line(report))
    for v in report.verdicts:
        c = v.claim
        head = Text.assemble((f"{v.verdict:<10}", styles[v.verdict]), shown(c.name, pad))
        console.print(head, soft_wrap=True)
        lhs = v.lhs or (c.lhs or "")
        stated = c.source.strip()
        if (c.latex is not None and "=" in stated) or c.form == "code":
            out(f"{pad}{stated}")
        else:
            out(f"{pad}{lhs} = {stated}")
        if c.example:
            out(f"{pad}(example {c.example})")
        if c.note:
            out(f"{pad}{c.note}", style="dim")
        if v.instances:
            fails = [i["values"] for i in v.instances if i["verdict"] != Verdict.PROVEN]
            every = _some(i["values"] for i in v.instances)
            if fails and (len(v.instances) > 1 or every):
                out(f"{pad}fails at {_some(fails)} ({len(fails)} of {len(v.instances)} values: {every})")
            elif c.form == "code" or every.startswith("line "):
                out(f"{pad}every line checked holds ({len(v.instances)}: {every})")
            elif len(v.instances) > 1 or every:
                out(f"{pad}holds at every value ({len(v.instances)}: {every})")
        if v.unchecked:
            out(f"{pad}not checked (the proof has no exact value for np.exp or np.log): line"
                f"{'s' if len(v.unchecked) > 1 else ''} {', '.join(map(str, v.unchecked))}")
        if v.verdict == Verdict.ERROR:
            where = ", ".join(x for x in (v.error_field, v.error_position) if x)
            out(f"{pad}{where}: {v.message}")
            continue
        if v.verdict == Verdict.UNPROVEN:
            out(f"{pad}{v.message}")
        if v.shape_error:
            out(f"{pad}shape: {v.shape_error}")
        if v.wrong_entries:
            total = len(v.wrong_entries) + len(v.holding_entries)
            out(f"{pad}wrong entries ({len(v.wrong_entries)} of {total}): {_entries_text(v.wrong_entries)}")
            if v.holding_entries:
                out(f"{pad}these hold ({len(v.holding_entries)} of {total}): {_entries_text(v.holding_entries)}")
        w = v.witness
        if w:
            values = ", ".join(f"{k}={_fmt(x)}" for k, x in w["values"].items())
            neurons = ", ".join(f"{k}={_fmt(x)}" for k, x in w["neurons"].items())
            if "entry" in w:
                r, cc = w["entry"]
                sides = f"entry [{r},{cc}] ({w['entry_name']}) is {_fmt(w['lhs'][r][cc])}, the claim gives {_fmt(w['rhs'][r][cc])}"
            else:
                sides = f"{lhs} is {_fmt(w['lhs'])}, the claim gives {_fmt(w['rhs'])}"
            out(f"{pad}witness: {sides}")
            out(f"{pad}  at {values}")
            out(f"{pad}  where {neurons}")
        if v.repair:
            out(f"{pad}repair: {v.repair.text}")
            for r in v.other_repairs:
                out(f"{pad}    or: {r.text}")
        elif v.verdict == Verdict.REFUTED:
            out(f"{pad}no single change (a transpose, an index, a neuron, a layer, the bias's 1, "
                "a sign, a constant factor) makes it hold")
    out(report.summary())


def _some(values, most: int = 6) -> str:
    """The first few of a claim's letters' values, and how many more."""
    values = list(values)
    more = f"; and {len(values) - most} more" if len(values) > most else ""
    return "; ".join(values[:most]) + more


# ---------------------------------------------------------------------------
# several files at once (python -m derive check a.toml b.toml ...): one result per file
# ---------------------------------------------------------------------------

def file_exit_code(result: Report | str) -> int:
    """A file's exit code: its claims' (0, 1 or 2), or 2 for a file that cannot be read (its error line)."""
    return EXIT_BAD_INPUT if isinstance(result, str) else result.exit_code


def files_exit_code(results: list) -> int:
    """The run's exit code over every file: the worst of theirs (2 over 1 over 0), as one file's claims combine."""
    return max(file_exit_code(r) for r in results)


def files_summary(results: list) -> str:
    """'3 files: 1 all proven, 1 with refuted or unproven claims, 1 with errors' (every kind named)."""
    codes = [file_exit_code(r) for r in results]
    kinds = (("all proven", EXIT_OK), ("with refuted or unproven claims", EXIT_REFUTED), ("with errors", EXIT_BAD_INPUT))
    return f"{len(codes)} file{'s' if len(codes) != 1 else ''}: " + ", ".join(f"{codes.count(c)} {k}" for k, c in kinds)


def files_json(paths: list[str], results: list) -> list[dict]:
    """Per file: path, exit_code, and summary and claims (each claim as one file's --json gives it), or error (its line)."""
    out = []
    for path, r in zip(paths, results):
        item = {"path": path, "exit_code": file_exit_code(r)}
        item.update({"error": r} if isinstance(r, str) else {"summary": r.summary(), "claims": r.to_json()})
        out.append(item)
    return out


def render_files(paths: list[str], results: list, console) -> None:
    """Each file's report in turn (a file that cannot be read: its error line), then the run's summary."""
    from rich.text import Text

    for path, r in zip(paths, results):
        if isinstance(r, str):
            console.print(Text(shown(f"error: {r}"), style="magenta"), soft_wrap=True)  # the message names the file
        else:
            render(r, console)
        console.print()
    console.print(files_summary(results), soft_wrap=True)
