"""Quality against training minutes for every recorded CIFAR-10 run: the frontier figure.

    python benchmarks/frontier.py            # writes reports/frontier.png

Reads each `reports/cifar10*/record.json` (what ran, where, for how many minutes of the
train stage, the command, the `series` it belongs to) and its `metrics.json`
(best-assignment PSNR on the protocol's 5,000 unseen test pairs), and draws PSNR against
minutes on a log axis: the CPU rows of each series as a line, a record with `variant_of` (one
run that changes one knob of a series, e.g. a weight) as a hollow point in that series'
colour, the GPU run apart (another machine), the issue's goals as marks, the baseline
(output the mixture) as a floor.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOALS = {5: 17.8, 15: 18.2, 60: 18.7}  # minutes of CPU training → dB (issue 22, "Separation you can see (2)")
# Where the values of the three leading series go: (offset in points, alignment).
LABEL_SIDES = (((-6, 4), "right"), ((-2, 6), "right"), ((0, -13), "center"))


def load_records(reports: Path) -> list[dict]:
    """One dict per record: its fields, its test PSNR and the baseline's."""
    records = []
    for path in sorted(reports.glob("cifar10*/record.json")):
        record = json.loads(path.read_text())
        metrics = json.loads((path.parent / record["metrics"]).read_text())
        record.update(
            psnr=metrics["test"]["best"]["psnr"], baseline=metrics["baseline"]["best"]["psnr"], folder=path.parent.name
        )
        records.append(record)
    return records


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = load_records(REPO / "reports")
    if not records:
        sys.exit("no reports/cifar10*/record.json")
    on_cpu = sorted((r for r in records if r["device"] == "cpu" and r["protocol"]), key=lambda r: r["train_minutes"])
    others = [r for r in records if r not in on_cpu]
    variants = [r for r in on_cpu if "variant_of" in r]
    cpu = [r for r in on_cpu if r not in variants]
    fig, ax = plt.subplots(figsize=(8, 8), dpi=100)
    # The series reaching the highest PSNR first (in blue), the baselines after it.
    series = sorted({r["series"] for r in cpu}, key=lambda name: -max(r["psnr"] for r in cpu if r["series"] == name))
    palette = (
        "tab:blue",
        "tab:gray",
        "tab:purple",
        "tab:orange",
        "tab:brown",
        "tab:olive",
        "tab:cyan",
        "tab:pink",
        "navy",
        "darkgoldenrod",
        "indigo",
    )
    if len(series) > len(palette):  # zip would drop a series from the figure without a word
        sys.exit(f"{len(series)} CPU series in the records, colours for {len(palette)}: add colours to frontier.py")
    for rank, (name, color) in enumerate(zip(series, palette)):
        rows = [r for r in cpu if r["series"] == name]
        ax.plot(
            [r["train_minutes"] for r in rows],
            [r["psnr"] for r in rows],
            "o-",
            color=color,
            label=f"CPU, 2 cores: {name}",
        )
        # Values beside the three leading series only, above left of their points or below
        # (the third, whose points lie under the second's): the levers' points lie within 0.4 dB of each other at 5 and
        # 15 minutes, where labels would cover one another (their values are in
        # docs/cifar10.md's tables).
        if rank >= len(LABEL_SIDES):
            continue
        offset, align = LABEL_SIDES[rank]
        for r in rows:
            ax.annotate(
                f"{r['psnr']:.2f}",
                (r["train_minutes"], r["psnr"]),
                textcoords="offset points",
                xytext=offset,
                ha=align,
                fontsize=8,
                color=color,
            )
    colours = dict(zip(series, palette))
    for r in variants:
        if r["variant_of"] not in colours:
            sys.exit(
                f"reports/{r['folder']}/record.json: variant_of {r['variant_of']!r} is not a series of the records"
            )
        ax.plot(r["train_minutes"], r["psnr"], "o", color=colours[r["variant_of"]], markerfacecolor="none")
    if variants:  # one legend entry for them all: their values are in docs/cifar10.md's tables
        ax.plot(
            [], [], "o", color="black", markerfacecolor="none", label="one knob of the series of its colour changed"
        )
    for r in others:
        marker, color = ("*", "tab:red") if r["device"] != "cpu" else ("s", "tab:gray")
        ax.plot(
            r["train_minutes"], r["psnr"], marker, color=color, markersize=11 if marker == "*" else 7, label=r["label"]
        )
        ax.annotate(
            f"{r['psnr']:.2f}", (r["train_minutes"], r["psnr"]), textcoords="offset points", xytext=(8, -3), fontsize=8
        )
    ax.plot(
        list(GOALS),
        list(GOALS.values()),
        "_",
        color="tab:green",
        markersize=22,
        markeredgewidth=2,
        label="goals at 5, 15, 60 min (CPU)",
    )
    ax.axhline(records[0]["baseline"], color="black", linestyle=":", linewidth=1, label="output the mixture")
    ax.set_xscale("log")
    ax.set_xticks([1, 2, 5, 10, 15, 30, 60])
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("minutes of training (train stage)")
    ax.set_ylabel("PSNR, best assignment (dB)\n5,000 unseen CIFAR-10 pairs")
    ax.set_title("unmix `best`: separation quality against training time")
    ax.grid(True, which="major", alpha=0.3)
    # Below the axes, in two columns: ten CPU series inside the plot would cover their points.
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)
    fig.tight_layout()
    out = REPO / "reports" / "frontier.png"
    fig.savefig(out)
    for r in sorted(records, key=lambda r: r["train_minutes"]):
        print(
            f"{r['folder']:24s} {r['device']:5s} {r['train_minutes']:6.1f} min  {r['psnr']:.2f} dB  "
            f"{r.get('series', '')}{' (variant)' if 'variant_of' in r else ''}"
        )
    print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
