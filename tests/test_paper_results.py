"""The published scores: one table in fcnfast/paper_results.py, the same in docs/design.md §9."""

import re
from pathlib import Path

from fcnfast.models import MODEL_NAMES
from fcnfast.models.layout import LAYOUTS
from fcnfast.paper_results import PAPER_RESULTS, paper_scores

DESIGN = Path(__file__).resolve().parent.parent / "docs" / "design.md"


def _number(cell):
    return float(cell) if cell.strip() else None


def test_design_table_matches_the_code():
    rows = {}
    for line in DESIGN.read_text().splitlines():
        match = re.match(r"\| `([a-z0-9-]+)`( semantic| geometric)? \| [^|]+ \|([^|]*)\|([^|]*)\|([^|]*)\|([^|]*)\|", line)
        if match and match.group(1) in MODEL_NAMES:
            label = (match.group(2) or " semantic").strip()
            rows[(match.group(1), label)] = tuple(_number(match.group(i)) for i in range(3, 7))
    assert rows == {key: tuple(scores[:4]) for key, scores in PAPER_RESULTS.items()}


def test_every_entry_names_a_network_and_its_output():
    for (model, label), scores in PAPER_RESULTS.items():
        assert label in LAYOUTS[model].labels and scores.source
        assert paper_scores(model, label) is scores
    assert paper_scores("siftflow-fcn8s") is None
