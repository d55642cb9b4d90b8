"""bench.png: ms per image per provider and configuration, head and end-to-end side by side."""

from __future__ import annotations

from typing import List, Optional

from .config import KIND_TITLES, KINDS, size_label


def plot(report: dict, path: str) -> Optional[str]:
    """Draw the bench.json dict ``report`` into ``path`` (PNG): bars at the median, error bars from
    p10 to p90, and each bar's speedup written above its error bar.

    Returns None on success, else why no plot was written (matplotlib missing).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        return f"matplotlib is not installed ({exc}); pip install matplotlib"

    ok = [r for r in report["results"] if r.get("status") == "ok"]
    configs: List[tuple] = list(dict.fromkeys((tuple(r["size"]), r["batch"], r["dtype"]) for r in report["results"]))
    providers: List[str] = list(dict.fromkeys(r["provider"] for r in ok))
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 3 + 2.5 * len(configs) * 2), 4.8))
    width = 0.8 / max(len(providers), 1)
    for ax, kind in zip(axes, KINDS):
        for j, provider in enumerate(providers):
            rows = {(tuple(r["size"]), r["batch"], r["dtype"]): r for r in ok
                    if r["kind"] == kind and r["provider"] == provider}
            placed = [(i + (j - (len(providers) - 1) / 2) * width, rows[c]) for i, c in enumerate(configs) if c in rows]
            if not placed:
                continue
            xs = [x for x, _ in placed]
            meds = [r["median_ms_per_image"] for _, r in placed]
            lo = [r["median_ms_per_image"] - r["p10_ms_per_image"] for _, r in placed]
            hi = [r["p90_ms_per_image"] - r["median_ms_per_image"] for _, r in placed]
            ax.bar(xs, meds, width, yerr=[lo, hi], capsize=2, label=provider)
            for x, (_, r) in zip(xs, placed):
                if r.get("speedup") is None:
                    continue
                # Above the error bar's top, not the bar's: the whisker would cross the text.
                top = max(r["median_ms_per_image"], r["p90_ms_per_image"])
                ax.annotate(f"{r['speedup']:.2f}x", (x, top), xytext=(0, 3), textcoords="offset points",
                            ha="center", va="bottom", fontsize=7, zorder=5,
                            bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none", alpha=0.8))
        ax.set_xticks(range(len(configs)))
        ax.set_xticklabels([f"{size_label(s)}\nbatch {b}\n{d}" for s, b, d in configs])
        ax.set_ylabel("ms per image (median, p10-p90)")
        ax.set_title(f"{report['config']['model_class']} {KIND_TITLES[kind]}")
        ax.grid(axis="y", alpha=0.3)
        values = [r["median_ms_per_image"] for r in ok if r["kind"] == kind]
        if values and max(values) / max(min(values), 1e-9) > 30:
            ax.set_yscale("log")
        ax.margins(y=0.12)  # room above the tallest error bar for its label
    handles, labels = axes[0].get_legend_handles_labels()
    if not handles:
        handles, labels = axes[1].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 5), frameon=False)
    fig.suptitle(report["environment"]["device_name"], y=0.02, fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1, 0.9))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None
