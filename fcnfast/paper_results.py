"""The published scores of the release's networks: the yardstick ``fcnfast evaluate`` prints beside
its own, for a user with the original weights and the dataset.

Sources: the CVPR 2015 paper (Long, Shelhamer, Darrell; arXiv 1411.4038 v2) Table 4 (NYUDv2,
the 654 test images), Table 5 (SIFT Flow, the 200 test images; geometric: pixel accuracy) and
Table 6 of its appendix (PASCAL-Context val, the 59-class task). The VOC numbers are the release's
networks on seg11valid (its README: 63.6, 65.0, 65.5 and 65.4 mean IU). All in percent.

The paper's networks are not always the release's: its SIFT Flow network is an FCN-16s (the
release has 32s/16s/8s; only the 16s has a published row), its NYUDv2 "RGB-HHA" row is trained as
the release's nyud-fcn32s-color-hha is, and the release's VOC and PASCAL-Context weights are later,
"heavy" (high-momentum) trainings. The paper's SIFT Flow means leave out the three classes absent
from the test set (cow, desert, moon); ``fcnfast evaluate`` means leave out classes absent from
both labels and predictions.
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Tuple

__all__ = ["PaperScores", "PAPER_RESULTS", "paper_scores"]


class PaperScores(NamedTuple):
    """Pixel accuracy, mean accuracy, mean IU and frequency-weighted IU (percent; None where the
    source gives none), and where they were published."""

    pixel_acc: Optional[float]
    mean_acc: Optional[float]
    mean_iu: Optional[float]
    fw_iu: Optional[float]
    source: str


_NYUD = "CVPR 2015 Table 4, NYUDv2 test"
_CONTEXT = "CVPR 2015 (arXiv v2) Table 6, PASCAL-Context val, 59 classes"
_SIFT = "CVPR 2015 Table 5, SIFT Flow test"
_VOC = "the release's networks on seg11valid"

#: (model, label set) -> the published scores.
PAPER_RESULTS: Dict[Tuple[str, str], PaperScores] = {
    ("voc-fcn32s", "semantic"): PaperScores(90.48, 76.48, 63.63, 83.46, _VOC),
    ("voc-fcn16s", "semantic"): PaperScores(91.00, 78.07, 65.01, 84.26, _VOC),
    ("voc-fcn8s", "semantic"): PaperScores(91.22, 77.61, 65.51, 84.54, _VOC),
    ("voc-fcn8s-atonce", "semantic"): PaperScores(None, None, 65.40, None, _VOC + " (mean IU only)"),
    ("pascalcontext-fcn32s", "semantic"): PaperScores(63.8, 42.7, 31.8, 48.3, _CONTEXT + ", FCN-32s"),
    ("pascalcontext-fcn16s", "semantic"): PaperScores(65.7, 46.2, 34.8, 50.7, _CONTEXT + ", FCN-16s"),
    ("pascalcontext-fcn8s", "semantic"): PaperScores(65.9, 46.5, 35.1, 51.0, _CONTEXT + ", FCN-8s"),
    ("nyud-fcn32s-color", "semantic"): PaperScores(60.0, 42.2, 29.2, 43.9, _NYUD + ", FCN-32s RGB"),
    ("nyud-fcn32s-color-d", "semantic"): PaperScores(61.5, 42.4, 30.5, 45.5, _NYUD + ", FCN-32s RGBD"),
    ("nyud-fcn32s-hha", "semantic"): PaperScores(57.1, 35.2, 24.2, 40.4, _NYUD + ", FCN-32s HHA"),
    ("nyud-fcn32s-color-hha", "semantic"): PaperScores(64.3, 44.9, 32.8, 48.0, _NYUD + ", FCN-32s RGB-HHA"),
    ("siftflow-fcn16s", "semantic"): PaperScores(85.2, 51.7, 39.5, 76.1, _SIFT + ", FCN-16s"),
    ("siftflow-fcn16s", "geometric"): PaperScores(94.3, None, None, None, _SIFT + ", FCN-16s, geom. acc."),
}


def paper_scores(model: str, label: str = "semantic") -> Optional[PaperScores]:
    """The published scores of ``model`` (a registry name) on ``label``, or None when there are none."""
    return PAPER_RESULTS.get((model, label))
