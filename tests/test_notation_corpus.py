"""Formulas transcribed from the six sources as printed, each with its truth on its file's spec: never a wrong verdict.

tests/notation_corpus/a and b are two independent transcriptions (365 formulas: Ng's slides
and assignments, CS231n's notes and NumPy code, Goodfellow's Algorithm 6.4 and 6.5,
Bishop 5.3, Wikipedia's article, Rumelhart-Hinton-Williams' chapter and Nature letter), about
a third of them deliberately wrong variants; 330 are read and judged right. A comment above each claim says whether it holds
on its spec. ERROR is an acceptable verdict (a formula the notation leaves with two readings,
or one outside the vocabulary); a wrong verdict is not. The counts print with
`python -m pytest tests/test_notation_corpus.py -s`.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from derive.claims import check_file
from derive.verdict import Verdict

CORPUS = Path(__file__).resolve().parent / "notation_corpus"
TRUTH = re.compile(r'# truth: (holds|fails)[^\n]*\n\[\[claim\]\]\nname = "([^"]*)"')


def judged() -> list[tuple[str, str, str, Verdict]]:
    """(file, claim, truth, verdict) for every claim of the corpus."""
    out = []
    for path in sorted(CORPUS.glob("*/*.toml")):
        text = path.read_text(encoding="utf-8")
        if "[[claim]]" not in text:
            continue  # a notation file the claims files name
        verdicts = {v.claim.name: v.verdict for v in check_file(path).verdicts}
        for truth, name in TRUTH.findall(text):
            out.append((f"{path.parent.name}/{path.name}", name, truth, verdicts[name]))
    return out


def test_no_formula_of_the_sources_gets_a_wrong_verdict():
    rows = judged()
    assert len(rows) == 365
    wrong = [r for r in rows if (r[2], r[3]) in (("holds", Verdict.REFUTED), ("fails", Verdict.PROVEN))]
    assert wrong == []
    right = [r for r in rows if (r[2], r[3]) in (("holds", Verdict.PROVEN), ("fails", Verdict.REFUTED))]
    counts = Counter(r[3] for r in rows if r not in right)
    print(f"\n{len(right)} of {len(rows)} read and judged right ({len(right) / len(rows):.1%}); "
          f"the others: {dict(counts)}; wrong verdicts: {len(wrong)}")
    assert len(right) >= 330  # the floor as measured: a change that reads fewer fails here
