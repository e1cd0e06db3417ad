"""The tradeoff report: plots of the study and one self-contained HTML page (figures inlined as
PNG) that answers each research question in a sentence with its table, plus a Markdown twin.

matplotlib draws off-screen (Agg), imported here only.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from green_deploy.evaluate.summary import markdown_table
from green_deploy.tradeoff.frontier import cumulative_energy_j, pareto_front, relative_to_baseline
from green_deploy.tradeoff.questions import BASELINES, Answer, scored_cells


@dataclass(frozen=True)
class Figure:
    """A plot: its file name, caption, the matplotlib figure (for saving and MLflow) and its PNG."""

    name: str
    title: str
    figure: Any
    png: bytes


def figures(results: pd.DataFrame, search_front: pd.DataFrame | None = None) -> list[Figure]:
    """Energy vs accuracy with each model's front (models whose accuracy is chance left out),
    energy ratio per technique, framework ratio, break-even curves, and the search's Pareto sets
    beside the declared variants; a plot without data is left out."""
    import matplotlib

    matplotlib.use("Agg")
    drawn = [
        _energy_accuracy(scored_cells(results)[0]),
        _technique_ratios(results),
        _framework_ratios(results),
        _break_even_curves(results),
        _search_fronts(results, search_front if search_front is not None else pd.DataFrame()),
    ]
    return [figure for figure in drawn if figure is not None]


def render_html(answers: list[Answer], plots: list[Figure], title: str, preamble: str = "") -> str:
    sections = []
    for answer in answers:
        table = (
            answer.table.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0)
            if len(answer.table)
            else ""
        )
        sections.append(
            f"<section id='{answer.question}'><h2>{answer.question}: {html.escape(answer.title)}</h2>"
            f"<p class='answer'>{html.escape(answer.sentence)}</p>{table}</section>"
        )
    images = "".join(
        f"<figure><img alt='{html.escape(f.title)}' src='data:image/png;base64,{base64.b64encode(f.png).decode()}'>"
        f"<figcaption>{html.escape(f.title)}</figcaption></figure>"
        for f in plots
    )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(preamble)}</p>"
        f"<nav>{' · '.join(f'<a href=#{a.question}>{a.question}</a>' for a in answers)}</nav>"
        f"{''.join(sections)}<h2>Figures</h2>{images}</body></html>"
    )


def render_markdown(answers: list[Answer], title: str, preamble: str = "") -> str:
    lines = [f"# {title}", "", preamble, ""]
    for answer in answers:
        lines += [f"## {answer.question}: {answer.title}", "", answer.sentence, ""]
        if len(answer.table):
            lines += [markdown_table(answer.table), ""]
    return "\n".join(lines)


# ---- the plots ------------------------------------------------------------------------------
def _figure(name: str, title: str, figure: Any) -> Figure:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return Figure(name, title, figure, buffer.getvalue())


def _log_x(ax: Any) -> None:
    """A log x axis whose labels fit a small panel: at most 1-2-5 steps, plain numbers, no minor
    tick labels (matplotlib labels every minor tick of a range under a decade, overlapping)."""
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=6))
    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(labelsize=7)


def _energy_accuracy(results: pd.DataFrame) -> Figure | None:
    import matplotlib.pyplot as plt

    if results.empty:  # no cell's accuracy says anything (every model has random weights)
        return None
    data = results[results.batch_size == results.batch_size.min()]
    data = data.assign(on_front=pareto_front(data, by=("model_id", "target", "device")))
    models = sorted(data.model_id.unique())
    columns = min(3, len(models))
    rows = int(np.ceil(len(models) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.3 * rows), squeeze=False)
    for ax, model in zip(axes.flat, models, strict=False):
        subset = data[data.model_id == model]
        for framework, marker in (("torch", "o"), ("tensorflow", "s"), ("onnx", "^")):
            points = subset[subset.framework == framework]
            ax.scatter(
                points.energy_per_item_j * 1e3,
                points.accuracy,
                marker=marker,
                s=22,
                alpha=0.7,
                label=framework,
            )
        front = subset[subset.on_front].sort_values("energy_per_item_j")
        ax.step(front.energy_per_item_j * 1e3, front.accuracy, where="post", color="black", lw=1)
        _log_x(ax)
        ax.set_title(model, fontsize=9)
        ax.set_xlabel("mJ / inference", fontsize=8)
        ax.set_ylabel(str(subset.metric.iloc[0]) if "metric" in subset else "accuracy", fontsize=8)
    for ax in list(axes.flat)[len(models) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    figure.tight_layout()
    batch = int(data.batch_size.min())
    return _figure(
        "energy_vs_accuracy",
        f"Energy vs accuracy per variant (batch {batch}); the line is the Pareto front",
        figure,
    )


def _technique_ratios(results: pd.DataFrame) -> Figure | None:
    import matplotlib.pyplot as plt

    relative = relative_to_baseline(results, BASELINES)
    relative = relative[~relative.variant_id.isin(BASELINES)].dropna(subset=["energy_ratio"])
    if relative.empty:
        return None
    order = relative.groupby("technique").energy_ratio.median().sort_values().index
    figure, ax = plt.subplots(figsize=(8, 0.35 * len(order) + 1.2))
    ax.boxplot(
        [relative[relative.technique == t].energy_ratio for t in order], vert=False, tick_labels=list(order)
    )
    ax.axvline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("J/inference relative to the framework's baseline (log)")
    return _figure(
        "technique_energy_ratio", "Energy per inference relative to the baseline, by technique", figure
    )


def _framework_ratios(results: pd.DataFrame) -> Figure | None:
    import matplotlib.pyplot as plt

    base = results[results.variant_id.isin(BASELINES)]
    wide = base.pivot_table(index=["model_id", "batch_size"], columns="framework", values="energy_per_item_j")
    if not {"torch", "tensorflow"} <= set(wide.columns):
        return None
    ratio = (wide.tensorflow / wide.torch).dropna().unstack("batch_size")
    if ratio.empty:  # no model measured in both (own models come in one framework each)
        return None
    figure, ax = plt.subplots(figsize=(8, 3.5))
    ratio.plot.bar(ax=ax, logy=True)
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_ylabel("TensorFlow / PyTorch J/inference (log)")
    ax.set_xlabel("")
    return _figure(
        "framework_ratio", "Framework: the TensorFlow baseline's J/inference over PyTorch's", figure
    )


def _break_even_curves(results: pd.DataFrame, n_variants: int = 6) -> Figure | None:
    """The variants that save the most energy at batch 1: cumulative energy against inferences."""
    import matplotlib.pyplot as plt

    data = relative_to_baseline(results[results.batch_size == results.batch_size.min()], BASELINES)
    data = data.join(
        data[data.variant_id.isin(BASELINES)]
        .set_index(["model_id", "framework", "target", "device"])
        .energy_per_item_j.rename("base_j"),
        on=["model_id", "framework", "target", "device"],
    )
    data = data[~data.variant_id.isin(BASELINES) & (data.base_j > data.energy_per_item_j)]
    data = data.dropna(subset=["optimization_total_energy_j", "base_j"])
    if data.empty:
        return None
    chosen = data.assign(saving=data.base_j - data.energy_per_item_j).nlargest(n_variants, "saving")
    horizon = 10 * float((chosen.optimization_total_energy_j / chosen.saving).max())
    n = np.logspace(0, np.log10(max(horizon, 10.0)), 100)
    figure, ax = plt.subplots(figsize=(8, 4.5))
    for row in chosen.itertuples():
        line = ax.plot(
            n,
            cumulative_energy_j(row.optimization_total_energy_j, row.energy_per_item_j, n),
            label=f"{row.model_id}/{row.variant_id}: repaid after {row.optimization_total_energy_j / row.saving:,.0f}",
        )
        ax.plot(n, cumulative_energy_j(0.0, row.base_j, n), color=line[0].get_color(), ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("inferences")
    ax.set_ylabel("energy spent (J)")
    ax.legend(fontsize=7)
    return _figure(
        "break_even",
        "Break-even at batch 1 of the variants that save most: optimization energy plus inferences (solid) "
        "against the baseline (dotted)",
        figure,
    )


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222}"
    "table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0 1.5rem}"
    "td,th{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:right}"
    "p.answer{font-size:1.05rem;background:#f4f8f4;padding:.6rem;border-left:4px solid #3a7}"
    "img{max-width:100%}figure{margin:1.5rem 0}"
)


def _search_fronts(results: pd.DataFrame, front: pd.DataFrame) -> Figure | None:
    """Per searched model, at the search's cell: the declared variants, the search's Pareto set
    and the baselines (all on the test split)."""
    import matplotlib.pyplot as plt

    if front.empty:
        return None
    keys = ["model_id", "target", "device", "batch_size"]
    declared = results.merge(front[keys].drop_duplicates(), on=keys)
    models = sorted(front.model_id.unique())
    figure, axes = plt.subplots(1, len(models), figsize=(4.4 * len(models), 3.4), squeeze=False)
    for ax, model in zip(axes.flat, models, strict=True):
        mine = front[front.model_id == model]
        found = mine[mine.variant_id.str.startswith("search_")].sort_values("energy_per_item_j")
        base = mine[mine.variant_id.isin(BASELINES)]
        others = declared[(declared.model_id == model) & ~declared.variant_id.isin(BASELINES)]
        ax.scatter(
            others.energy_per_item_j * 1e3, others.accuracy, s=18, alpha=0.6, label="declared variants"
        )
        ax.plot(
            found.energy_per_item_j * 1e3, found.accuracy, "*-", ms=9, lw=1, color="C3", label="search front"
        )
        ax.scatter(
            base.energy_per_item_j * 1e3, base.accuracy, marker="D", s=30, color="black", label="baseline"
        )
        _log_x(ax)
        ax.set_title(f"{model} (batch {int(mine.batch_size.iloc[0])})", fontsize=9)
        ax.set_xlabel("mJ / inference", fontsize=8)
        ax.set_ylabel(str(mine.metric.iloc[0]), fontsize=8)
    axes.flat[0].legend(fontsize=7)
    figure.tight_layout()
    return _figure(
        "search_fronts",
        "Optuna's Pareto set per searched model beside the declared variants (test split)",
        figure,
    )
