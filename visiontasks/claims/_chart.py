"""The training claims' chart: training-loss curves, one panel per comparison, side by side."""

from __future__ import annotations

from pathlib import Path


def loss_chart(title: str, panels: dict[str, dict[str, dict[str, list]]], path: Path) -> Path:
    """Draw ``panels`` (panel title -> arm -> ``{"step", "loss"}``) as side-by-side line charts (log
    scale) against SGD steps into the PNG ``path``. The y axis is the training loss, shared, unless a
    panel's title says it plots an error (``"val error ..."``): then that panel has its own axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    share = not any("error" in t for t in panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels) + 0.4, 3.0), sharey=share, squeeze=False)
    for ax, (panel, arms) in zip(axes[0], panels.items()):
        for label, c in arms.items():
            ax.plot(c["step"], c["loss"], label=label, linewidth=1.3)
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel("SGD step", fontsize=8)
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
        if not share or ax is axes[0][0]:
            ax.set_ylabel(panel if "error" in panel else "training loss (cross-entropy)", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
