"""``tables.md`` of ``growlm analyze``: the Nexusformer paper's Tables 3, 4 and 5 in their layout,
plus the periodicity tests (appendix D) and the law fit (§5.3)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def tokens_label(tokens: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if tokens >= size:
            return f"{tokens / size:.4g}{unit}"
    return f"{tokens:g}"


def _f(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) >= 1e4 or (value != 0 and abs(value) < 1e-3) else \
            f"{value:.{digits}f}"
    return str(value)


def _size(run: dict[str, Any]) -> str:
    params = run.get("parameters") or {}
    if "old" in params:
        return f"{params['old'] / 1e6:.2f}M→{params['new'] / 1e6:.2f}M"
    return run["label"]


def table3(report: dict[str, Any]) -> str:
    """Paper Table 3: per run and snapshot, Z, NOC and the benchmark average."""
    lines = ["| Run | Model_size | Init | Train_data | Z | NOC | Avg | val PPL |", "|---|---|---|---|---|---|---|---|"]
    runs = {r["label"]: r for r in report["runs"]}
    for row in report["snapshots"]:
        run = runs[row["run"]]
        lines.append(f"| {row['run']} | {_size(run)} | {run['init']} | {tokens_label(row['tokens'])} | "
                     f"{_f(row['z'])} | {_f(row['noc'])} | {_f(row.get('paper5'), 3)} | {_f(row.get('ppl'), 3)} |")
    return "\n".join(lines)


def table4(report: dict[str, Any]) -> str:
    """Paper Table 4: one block of rows (Z, NOC, R, loss) per run, snapshots as columns; one table
    per distinct token grid."""
    by_run: dict[str, list[dict[str, Any]]] = {}
    for row in report["snapshots"]:
        by_run.setdefault(row["run"], []).append(row)
    grids: dict[tuple, list[str]] = {}
    for label, rows in by_run.items():
        grids.setdefault(tuple(r["tokens"] for r in rows), []).append(label)
    runs = {r["label"]: r for r in report["runs"]}
    parts = []
    for grid, labels in grids.items():
        lines = ["| Setting | Metric | " + " | ".join(tokens_label(t) for t in grid) + " |",
                 "|---|---|" + "---|" * len(grid)]
        for label in labels:
            rows = by_run[label]
            setting = f"{label} ({runs[label]['init']})"
            for key, name in (("z", "Z"), ("noc", "NOC"), ("R", "R"), ("val_loss", "loss")):
                lines.append(f"| {setting} | {name} | " + " | ".join(_f(r.get(key)) for r in rows) + " |")
                setting = ""
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def table5(report: dict[str, Any]) -> str:
    """Paper Table 5: loadings of the state features on PC1 and PC2."""
    pca = report.get("pca")
    if not pca:
        return "(PCA left out)"
    names = {"theta": "θ", "rho": "ρ", "noc": "NOC", "z": "Z", "perf": "Performance"}
    header = "| | " + " | ".join(names.get(f, f) for f in pca["features"]) + " | explained variance |"
    lines = [header, "|---|" + "---|" * (len(pca["features"]) + 1)]
    for i, row in enumerate(pca["components"][:2]):
        lines.append(f"| PC{i + 1} | " + " | ".join(f"{v:.3f}" for v in row)
                     + f" | {100 * pca['explained_variance_ratio'][i]:.2f}% |")
    return "\n".join(lines)


def periodicity_table(report: dict[str, Any]) -> str:
    lines = ["| Run | n | ω (rad/token) | period (tokens) | A | β1 (per token) | R² | F vs constant (df) | p(F) | "
             "F given trend | p (F given trend) | p (permutation, given trend) | Fisher g | p(g) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in report["runs"]:
        h, g = run["periodicity"].get("harmonic"), run["periodicity"].get("fisher")
        if not h and not g:
            continue
        h = h or {}
        g = g or {}
        df = f"({h['df_model']:.0f}, {h['df_resid']:.0f})" if h else ""
        lines.append(f"| {run['label']} | {h.get('n', g.get('n', ''))} | {_f(h.get('omega'))} | "
                     f"{tokens_label(h['period_tokens']) if h else '—'} | {_f(h.get('amplitude'))} | "
                     f"{_f(h.get('beta1'))} | {_f(h.get('r2'))} | {_f(h.get('f_statistic'), 3)} {df} | "
                     f"{_f(h.get('f_pvalue'))} | {_f(h.get('trend_f'), 3)} | {_f(h.get('trend_f_pvalue'))} | "
                     f"{_f(h.get('permutation_pvalue'))} | {_f(g.get('g'))} | "
                     f"{_f(g.get('pvalue'))} |")
    return "\n".join(lines)


def law_table(report: dict[str, Any]) -> str:
    laws = report.get("law")
    if not laws:
        return "(law fit left out: " + "; ".join(n for n in report.get("notes", []) if "law" in n) + ")"
    lines = ["| init | a | b | R² | points | p (runs permuted) | influential points | held-out run | RMSE ln PPL | "
             "mean abs. error PPL (%) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for init, law in laws.items():
        flagged = ", ".join(f"{e['run']}#{e['index']}" for e in law.get("influential", [])) or "none"
        run_p = law.get("run_permutation_pvalue")
        head = (f"| {init} | {law['a']:.4f} | {law['b']:.4f} | {law['r2']:.4f} | {law['n']} | "
                f"{_f(run_p)} ({law.get('run_permutations', 0)} orders) | {flagged} |")
        for entry in law["leave_one_run_out"]:
            lines.append(f"{head} {entry['run']} | {_f(entry['rmse_ln_ppl'])} | {_f(entry['mape_ppl'], 3)} |")
            head = "| | | | | | | |"
    return "\n".join(lines)


def radius_table(report: dict[str, Any]) -> str:
    """Paper Fig. 6 / Eq. 36: mean performance and mean ln PPL per band of R."""
    bands = report.get("radius_bands") or {}
    if not bands:
        return "(no performance measure)"
    parts = []
    for key, name in (("perf", f"performance ({report['settings'].get('performance_measure')})"),
                      ("ln_ppl", "ln PPL")):
        if bands.get(key):
            lines = [f"| R band | states | mean R | mean {name} | sd |", "|---|---|---|---|---|"]
            for b in bands[key]:
                lines.append(f"| [{b['low']:.4g}, {b['high']:.4g}] | {b['n']} | {b['mean_r']:.4g} | "
                             f"{_f(b['mean_perf'])} | {_f(b['std_perf'])} |")
            parts.append("\n".join(lines))
    return "\n\n".join(parts)


def write_tables(report: dict[str, Any], path: Path) -> Path:
    parts = ["# Growth dynamics", "",
             "## Snapshots (paper Table 3 layout)", "", table3(report), "",
             "## Trajectories (paper Table 4 layout)", "", table4(report), "",
             "## PCA loadings (paper Table 5 layout)", "", table5(report), "",
             "## Periodicity of R (appendix D)", "", periodicity_table(report), "",
             "## ln PPL = a |ln R| + b (§5.3)", "", law_table(report), "",
             "## Performance by band of R (Fig. 6, Eq. 36)", "", radius_table(report), ""]
    if report.get("notes"):
        parts += ["## Notes", "", *[f"- {n}" for n in report["notes"]], ""]
    path.write_text("\n".join(parts))
    return path
