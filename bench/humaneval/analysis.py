"""What the raters said: win / tie / loss per question and model pair, a Bradley-Terry
ranking, inter-rater agreement, and the paper-style stacked bar chart.

* Shares with 95% Wilson score intervals (statsmodels' `proportion_confint`), each share of
  all the votes of that question and pair.
* Bradley-Terry strengths by Hunter's MM iteration, a tie counting half a win to each side;
  reported when the study has more than two models.
* Krippendorff's alpha (the `krippendorff` package, nominal level) per question: units are
  pairs, coders are raters, values left / tie / right.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Sequence

import numpy as np

from bench.humaneval.study import CHOICES, Study, all_votes


def model_votes(study: Study) -> list[dict]:
    """Each vote resolved to models: (question, a, b, outcome for a: win / tie / loss), with
    (a, b) in the order the study lists its models."""
    order = list(study.config["models"])
    out = []
    for v in all_votes(study):
        pair = study.pair(v["pair"])
        if pair is None:
            continue
        left, right = pair["left"]["model"], pair["right"]["model"]
        a, b = sorted((left, right), key=order.index)
        winner = {"left": left, "right": right, "tie": None}[v["choice"]]
        outcome = "tie" if winner is None else ("win" if winner == a else "loss")
        out.append({"rater": v["rater"], "pair": v["pair"], "question": v["question"], "a": a, "b": b, "outcome": outcome})
    return out


def wilson(k: int, n: int) -> tuple[float, float]:
    from statsmodels.stats.proportion import proportion_confint

    if n == 0:
        return (math.nan, math.nan)
    lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
    return float(lo), float(hi)


def win_table(study: Study) -> list[dict]:
    votes = model_votes(study)
    order = list(study.config["models"])
    rows = []
    for q in study.questions:
        for a, b in itertools.combinations(order, 2):
            sel = [v["outcome"] for v in votes if v["question"] == q["id"] and v["a"] == a and v["b"] == b]
            n = len(sel)
            row = {"question": q["id"], "a": a, "b": b, "votes": n}
            for outcome in ("win", "tie", "loss"):
                k = sel.count(outcome)
                row[outcome] = k
                row[f"{outcome}_share"] = k / n if n else math.nan
                row[f"{outcome}_ci"] = wilson(k, n)
            rows.append(row)
    return rows


def bradley_terry(models: Sequence[str], outcomes: Sequence[tuple[str, str, float]], iterations: int = 1000) -> dict[str, float]:
    """Strengths (summing to 1) from (a, b, score of a) with score 1 win, 0.5 tie, 0 loss.

    Hunter's (2004) MM update p_i <- W_i / sum_j n_ij / (p_i + p_j); a tiny prior of one tie
    against every other model keeps a model that never won at a finite strength.
    """
    idx = {m: i for i, m in enumerate(models)}
    k = len(models)
    wins = np.zeros((k, k))
    for a, b, s in outcomes:
        wins[idx[a], idx[b]] += s
        wins[idx[b], idx[a]] += 1 - s
    wins += 0.5 * (1 - np.eye(k)) * 1e-3
    games = wins + wins.T
    p = np.ones(k) / k
    for _ in range(iterations):
        denom = (games / (p[:, None] + p[None, :])).sum(axis=1)
        new = wins.sum(axis=1) / denom
        new /= new.sum()
        if np.max(np.abs(new - p)) < 1e-12:
            p = new
            break
        p = new
    return {m: float(p[idx[m]]) for m in models}


def agreement(study: Study) -> dict[str, float | None]:
    """Krippendorff's alpha per question (None where fewer than two raters share a pair)."""
    import krippendorff

    votes = all_votes(study)
    raters = sorted({v["rater"] for v in votes})
    pairs = sorted({v["pair"] for v in votes})
    out: dict[str, float | None] = {}
    for q in study.questions:
        data = np.full((len(raters), len(pairs)), np.nan)
        for v in votes:
            if v["question"] == q["id"]:
                data[raters.index(v["rater"]), pairs.index(v["pair"])] = CHOICES.index(v["choice"])
        shared = (np.isfinite(data).sum(axis=0) >= 2).any()
        if not shared or len(np.unique(data[np.isfinite(data)])) < 2:
            out[q["id"]] = None
            continue
        out[q["id"]] = float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))
    return out


def report(study: Study) -> dict[str, Any]:
    votes = model_votes(study)
    models = list(study.config["models"])
    out: dict[str, Any] = {"models": models, "raters": len({v["rater"] for v in votes}),
                           "votes": len(votes), "wins": win_table(study), "agreement": agreement(study)}
    if len(models) > 2:
        out["bradley_terry"] = {
            q["id"]: bradley_terry(models, [(v["a"], v["b"], {"win": 1.0, "tie": 0.5, "loss": 0.0}[v["outcome"]])
                                            for v in votes if v["question"] == q["id"]])
            for q in study.questions
        }
    return out


def markdown(study: Study, result: dict) -> str:
    def pct(x: float) -> str:
        return "—" if not math.isfinite(x) else f"{100 * x:.1f}%"

    def ci(c) -> str:
        return "—" if not all(math.isfinite(v) for v in c) else f"[{100 * c[0]:.1f}, {100 * c[1]:.1f}]"

    lines = ["# Human evaluation", "",
             f"{result['raters']} raters, {result['votes']} answers, {len(study.pairs)} pairs of {len(result['models'])} models "
             f"({', '.join(result['models'])}). Each pair shows two models' videos of the same prompt and index (the same "
             "seed), left and right at random, the models hidden. Shares of all answers of a question and pair, with 95% "
             "Wilson intervals.", "",
             "| question | A | B | answers | A wins | 95% CI | tie | 95% CI | B wins | 95% CI |",
             "|:---|:---|:---|---:|---:|:---|---:|:---|---:|:---|"]
    for r in result["wins"]:
        lines.append(f"| {r['question']} | {r['a']} | {r['b']} | {r['votes']} | {pct(r['win_share'])} | {ci(r['win_ci'])} | "
                     f"{pct(r['tie_share'])} | {ci(r['tie_ci'])} | {pct(r['loss_share'])} | {ci(r['loss_ci'])} |")
    lines += ["", "Inter-rater agreement (Krippendorff's alpha, nominal; 1 = full agreement, 0 = chance):", ""]
    for q, a in result["agreement"].items():
        lines.append(f"* {q}: " + ("not measurable (no pair answered by two raters, or one answer only)" if a is None else f"{a:.3f}"))
    if "bradley_terry" in result:
        lines += ["", "Bradley-Terry strengths (sum to 1; a tie is half a win):", "",
                  "| question | " + " | ".join(result["models"]) + " |", "|:---|" + "---:|" * len(result["models"])]
        for q, s in result["bradley_terry"].items():
            lines.append(f"| {q} | " + " | ".join(f"{s[m]:.3f}" for m in result["models"]) + " |")
    lines.append("")
    return "\n".join(lines)


def bar_chart(result: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.report import _png_bytes

    rows = result["wins"]
    labels = [f"{r['question'].replace('_', ' ')}\n{r['a']} vs {r['b']}" for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(rows) + 1.2))
    left = np.zeros(len(rows))
    for key, color, name in (("win_share", "#3a7", "A wins"), ("tie_share", "#bbb", "tie"), ("loss_share", "#c55", "B wins")):
        vals = np.array([0.0 if not math.isfinite(r[key]) else 100 * r[key] for r in rows])
        ax.barh(range(len(rows)), vals, left=left, color=color, label=name)
        for i, (v, l0) in enumerate(zip(vals, left)):
            if v >= 6:
                ax.text(l0 + v / 2, i, f"{v:.0f}%", ha="center", va="center", fontsize=8, color="white" if key != "tie_share" else "black")
        left += vals
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of answers (%)")
    ax.legend(loc="lower right", fontsize=8, ncol=3)
    ax.set_title("Human evaluation: A vs B", fontsize=10)
    data = _png_bytes(fig)
    plt.close(fig)
    return data


def csv_rows(result: dict) -> list[dict]:
    out = []
    for r in result["wins"]:
        row = {k: v for k, v in r.items() if not k.endswith("_ci")}
        for k in ("win", "tie", "loss"):
            row[f"{k}_ci_low"], row[f"{k}_ci_high"] = r[f"{k}_ci"]
        out.append(row)
    return out
