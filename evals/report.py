"""The self-contained HTML report of a run: plots embedded as base64 PNG (matplotlib, Agg), no network needed.

Example::

    >>> write_report(Path("runs/x/report.html"), rows, summary)  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TABLE_METRICS = (
    "hit@1", "recall@5", "mrr", "ndcg@10", "refusal_correct", "rougeL", "bertscore_f1",
    "judge_faithfulness", "judge_relevance", "judge_correctness",
)  # fmt: skip
PLOT_METRICS = (
    "rouge1", "rougeL", "rougeLsum", "bertscore_f1", "mrr", "ndcg@10",
    "judge_faithfulness", "judge_relevance", "judge_correctness",
)  # fmt: skip


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _distributions(rows: Sequence[dict[str, Any]]) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [m for m in PLOT_METRICS if any(r["metrics"].get(m) is not None for r in rows)]
    if not present:
        return None
    cols = 3
    nrows = (len(present) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 2.8 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, present, strict=False):
        values = [r["metrics"][name] for r in rows if r["metrics"].get(name) is not None]
        judge = name.startswith("judge_")
        ax.hist(values, bins=[1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5] if judge else 10, range=None if judge else (0, 1),
                color="#4c72b0", edgecolor="white")  # fmt: skip
        ax.set_title(f"{name} (n={len(values)})", fontsize=10)
    for ax in list(axes.flat)[len(present) :]:
        ax.axis("off")
    fig.tight_layout()
    return _png(fig)


def _retrieval_curve(rows: Sequence[dict[str, Any]], summary: dict[str, Any]) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = summary["metrics"]
    ks = [k for k in range(1, 11) if f"hit@{k}" in metrics]
    if not ks:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for kind, style in (("hit", "-o"), ("recall", "-s")):
        mean = [metrics[f"{kind}@{k}"]["mean"] for k in ks]
        lo = [metrics[f"{kind}@{k}"]["ci_low"] for k in ks]
        hi = [metrics[f"{kind}@{k}"]["ci_high"] for k in ks]
        ax.plot(ks, mean, style, label=f"{kind}@k")
        ax.fill_between(ks, lo, hi, alpha=0.15)
    base = (summary.get("baseline") or {}).get("differences", {})
    if f"hit@{ks[0]}" in base:
        ax.plot(ks, [base[f"hit@{k}"]["baseline_mean"] for k in ks if f"hit@{k}" in base], "--", color="grey",
                label="hit@k (baseline)")  # fmt: skip
    ax.set_xlabel("k (sources in the prompt, best first)")
    ax.set_ylim(0, 1.02)
    ax.set_xticks(ks)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Retrieval: hit@k and recall@k (95% CI bands)")
    return _png(fig)


def _diff_plot(summary: dict[str, Any]) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    diffs = (summary.get("baseline") or {}).get("differences", {})
    names = [m for m in TABLE_METRICS if m in diffs]
    if not names:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1))
    means = [diffs[n]["mean"] for n in names]
    err = [[m - diffs[n]["ci_low"] for n, m in zip(names, means, strict=True)],
           [diffs[n]["ci_high"] - m for n, m in zip(names, means, strict=True)]]  # fmt: skip
    colors = [
        "#c44e52" if diffs[n]["ci_high"] < 0 else "#55a868" if diffs[n]["ci_low"] > 0 else "#8c8c8c" for n in names
    ]
    ax.barh(names, means, xerr=err, color=colors)
    ax.axvline(0, color="black", lw=0.8)
    ax.invert_yaxis()
    ax.set_title("This run - baseline (paired, 95% CI)")
    return _png(fig)


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}"
    return html.escape(str(v))


def _src(s: dict[str, Any]) -> str:
    name = Path(s["source"]).name
    return f"{name}#{s['page']}" if s.get("page") is not None else name


def write_report(path: Path, rows: Sequence[dict[str, Any]], summary: dict[str, Any]) -> Path:
    """Write the report; returns its path."""
    e = html.escape
    metrics = summary["metrics"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>RAG evaluation report</title><style>",
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;"
        "font-size:13px}td,th{border:1px solid #ddd;padding:4px 6px;vertical-align:top}th{background:#f4f4f4}"
        ".fail{color:#b00;font-weight:bold}.ok{color:#070}"
        ".warn{background:#fff3cd;padding:8px;border:1px solid #e0c36b}"
        "details summary{cursor:pointer}code{background:#f4f4f4;padding:1px 3px}",
        "</style></head><body>",
        f"<h1>RAG evaluation: {e(summary['provenance'].get('dataset', ''))}</h1>",
        f"<p>{summary['n']} questions ({summary['answerable']} answerable, {summary['unanswerable']} unanswerable), "
        f"{len(summary['errors'])} errors; {summary['timing']['questions_per_minute']} questions/minute.</p>",
    ]
    th = summary.get("thresholds") or {}
    if th.get("fail_under"):
        if th["failures"]:
            parts.append("<h2 class='fail'>Thresholds missed</h2><ul>")
            parts += [f"<li class='fail'>{e(f)}</li>" for f in th["failures"]]
            parts.append("</ul>")
        else:
            parts.append(f"<p class='ok'>All thresholds met: {e(str(th['fail_under']))}</p>")
    judge = summary.get("judge")
    if judge and judge.get("logprobs_available") is False:
        parts.append("<p class='warn'>The judge server returned no logprobs: judge scores are means of sampled "
                     "scores, not G-Eval's probability-weighted scores.</p>")  # fmt: skip
    if judge and judge.get("unparsable"):
        parts.append(f"<p class='warn'>{judge['unparsable']} judge replies held no score (unparsable); they are left "
                     "out of the judge means.</p>")  # fmt: skip

    parts.append("<h2>Metrics</h2><table><tr><th>metric</th><th>mean</th><th>95% CI</th><th>n</th></tr>")
    for name, m in metrics.items():
        parts.append(f"<tr><td>{e(name)}</td><td>{_fmt(m['mean'])}</td>"
                     f"<td>{_fmt(m['ci_low'])} – {_fmt(m['ci_high'])}</td><td>{m['n']}</td></tr>")  # fmt: skip
    parts.append("</table>")

    for title, img in (
        ("Retrieval curve", _retrieval_curve(rows, summary)),
        ("Score distributions", _distributions(rows)),
        ("Comparison with the baseline", _diff_plot(summary)),
    ):
        if img:
            parts.append(f"<h2>{title}</h2>{img}")

    base = summary.get("baseline")
    if base:
        parts.append(f"<h2>Baseline {e(base['baseline_dir'])}</h2><p>{base['paired_questions']} paired questions."
                     "</p><table><tr><th>metric</th><th>baseline</th><th>this run</th><th>difference</th>"
                     "<th>95% CI</th></tr>")  # fmt: skip
        for name, d in base["differences"].items():
            cls = " class='fail'" if d["ci_high"] < 0 else ""
            parts.append(f"<tr{cls}><td>{e(name)}</td><td>{_fmt(d['baseline_mean'])}</td><td>{_fmt(d['current_mean'])}"
                         f"</td><td>{d['mean']:+.3f}</td>"
                         f"<td>{d['ci_low']:+.3f} – {d['ci_high']:+.3f}</td></tr>")  # fmt: skip
        parts.append("</table>")
        if base["worse"]:
            parts.append(f"<h3>Questions that got worse ({len(base['questions_worse'])})</h3><table><tr><th>question"
                         "</th><th>metric</th><th>before</th><th>after</th></tr>")  # fmt: skip
            for w in base["worse"]:
                if w["metric"] in TABLE_METRICS:
                    parts.append(f"<tr><td>{e(w['question'])}</td><td>{e(w['metric'])}</td><td>{_fmt(w['before'])}"
                                 f"</td><td>{_fmt(w['after'])}</td></tr>")  # fmt: skip
            parts.append("</table>")

    cols = [m for m in TABLE_METRICS if m in metrics]
    parts.append("<h2>Per question</h2><table><tr><th>#</th><th>question</th><th>answer</th><th>gold sources</th>"
                 "<th>retrieved</th>" + "".join(f"<th>{e(c)}</th>" for c in cols) + "</tr>")  # fmt: skip
    for i, r in enumerate(rows, start=1):
        answer = r["answer"] if r["error"] is None else f"ERROR: {r['error']}"
        short = answer if len(answer) <= 200 else answer[:200] + "…"
        ref = f"<br><i>reference:</i> {e(r['reference'])}" if r["reference"] else "<br><i>(unanswerable)</i>"
        parts.append(
            f"<tr><td>{i}</td><td>{e(r['question'])}</td><td><details><summary>{e(short)}</summary>{e(answer)}{ref}"
            f"</details></td><td>{e(', '.join(r['gold_sources']) or '—')}</td>"
            f"<td>{e(', '.join(_src(s) for s in r['retrieved'][:5]))}</td>"
            + "".join(f"<td>{_fmt(r['metrics'].get(c))}</td>" for c in cols)
            + "</tr>"
        )
    parts.append("</table>")

    parts.append("<h2>Provenance</h2><table>")
    for k, v in summary["provenance"].items():
        parts.append(f"<tr><td>{e(k)}</td><td><code>{e(str(v))}</code></td></tr>")
    parts.append("</table>")
    if judge:
        parts.append("<h2>Judge</h2><table>")
        for k, v in judge.items():
            if k != "steps":
                parts.append(f"<tr><td>{e(k)}</td><td>{e(str(v))}</td></tr>")
        parts.append("</table>")
        for crit, steps in judge.get("steps", {}).items():
            parts.append(f"<details><summary>Evaluation steps: {e(crit)}</summary><pre>{e(steps)}</pre></details>")
    parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in summary.get("notes", [])) + "</ul>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
