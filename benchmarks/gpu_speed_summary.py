"""Summary of ``benchmarks/gpu_speed.sh``: reads the JSON files in OUT, prints tables, writes
OUT/summary.json and OUT/summary.md.

    python benchmarks/gpu_speed_summary.py OUT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    lines = ["| " + " | ".join(title for _, title in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for key, _ in columns:
            value = row.get(key)
            cells.append(f"{value:,.3g}" if isinstance(value, float) and abs(value) < 1 else
                         f"{value:,.1f}" if isinstance(value, float) else "" if value is None else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summarise(out: Path) -> dict[str, Any]:
    summary: dict[str, Any] = {"device": (out / "device.txt").read_text().strip() if (out / "device.txt").exists()
                               else None}
    bench_rows = []
    for path in sorted(out.glob("bench-*.json")):
        for row in _load(path) or []:
            variant = row.get("variant") or {}
            label = row["name"]
            if "nexus_fused" in variant:
                label += " fused" if variant["nexus_fused"] else " unfused"
            if variant.get("fused_linears") is False:
                label += " unfused-linears"
            if variant.get("rotary_inline"):
                label += " rotary-inline"
            if variant.get("pattention_kernel") is False:
                label += " no-norm-kernel"
            if variant.get("coordinate_descent_tuning"):
                label += " +CDT"
            bench_rows.append({"preset": row["preset"], "model": label, "seq": row["seq_len"],
                               "micro_batch": row["micro_batch"], "tokens_per_s": row["tokens_per_s"],
                               "mfu_percent": 100 * row["mfu"], "peak_tflops": row["peak_tflops"],
                               "memory_gb": row["max_memory_gb"], "first_step_s": row.get("first_step_s"),
                               "file": path.name})
    summary["bench"] = bench_rows
    ratios = {}
    by = {(r["preset"], r["seq"], r["model"]): r for r in bench_rows}
    for (preset, seq, model), row in by.items():
        if model == "transformers" and (preset, seq, "growlm") in by:
            ratios[f"{preset} growlm/transformers"] = by[(preset, seq, "growlm")]["tokens_per_s"] / row["tokens_per_s"]
        if model == "growlm unfused" and (preset, seq, "growlm fused") in by:
            ratios[f"{preset} fused/unfused"] = by[(preset, seq, "growlm fused")]["tokens_per_s"] / row["tokens_per_s"]
        if model.endswith(" rotary-inline") and (preset, seq, model[:-len(" rotary-inline")]) in by:
            ratios[f"{preset} rotary op/inline"] = (by[(preset, seq, model[:-len(" rotary-inline")])]["tokens_per_s"]
                                                    / row["tokens_per_s"])
        if model == "growlm unfused-linears" and (preset, seq, "growlm") in by:
            ratios[f"{preset} fused/unfused linears"] = by[(preset, seq, "growlm")]["tokens_per_s"] / row["tokens_per_s"]
    summary["ratios"] = ratios
    summary["profiles"] = {}
    for path in sorted((out / "profile").glob("profile-*.json")):
        profile = _load(path)
        if profile:
            summary["profiles"][profile["label"]] = {
                "time_per_step_ms": profile["time_per_step_ms"],
                "groups_percent": {g: 100 * v["share"] for g, v in profile["groups"].items()},
                "top_kernels": [(k["name"][:100], round(100 * k["share"], 1)) for k in profile["top_kernels"][:8]]}
    summary["find_batch"] = [
        {"preset": r["preset"], "activation_checkpointing": r["activation_checkpointing"], "compiled": r["compiled"],
         "max_micro_batch": r["max_micro_batch"], "bounded": r["bounded"],
         "peak_memory_gb_at_max": r.get("peak_memory_gb_at_max"), "device_memory_gb": r.get("device_memory_gb")}
        for path in sorted(out.glob("find-batch-*.json")) for r in (_load(path) or [])]
    plans = []
    for path in sorted(out.glob("plan-*-*.json")):
        ledger = _load(path)
        if not ledger:
            continue
        for stage in ledger["stages"]:
            plans.append({"run": path.stem, "stage": stage["stage"], "stage_to_first_step_s":
                          stage.get("stage_to_first_step_s"), "steady_tokens_per_s": stage.get("steady_tokens_per_s"),
                          "wall_tokens_per_s": stage.get("wall_tokens_per_s"), "stage_seconds": stage.get("seconds")})
    summary["plan"] = plans
    pads = _load(out / "nexus-pads.json")
    summary["nexus_pads"] = [{"variant": r["variant"], "pad": r["pad"], "ms": 1e3 * r["seconds"],
                              "speedup": r["speedup"]} for r in pads] if pads else []
    skipped = out / "skipped.txt"
    summary["skipped"] = [line for line in skipped.read_text().splitlines() if line] if skipped.exists() else []
    return summary


def markdown(summary: dict[str, Any]) -> str:
    parts = [f"Device: {summary['device']}", "", "## Throughput", "",
             _table(summary["bench"], [("preset", "preset"), ("model", "model"), ("seq", "seq"),
                                       ("micro_batch", "micro-batch"), ("tokens_per_s", "tokens/s"),
                                       ("mfu_percent", "MFU %"), ("peak_tflops", "matmul TFLOP/s"),
                                       ("memory_gb", "GiB"), ("first_step_s", "first step s")])]
    if summary["ratios"]:
        parts += ["", *(f"- {k}: {v:.3f}" for k, v in summary["ratios"].items())]
    for label, profile in summary["profiles"].items():
        parts += ["", f"## Profile {label} ({profile['time_per_step_ms']:.1f} ms device time per step)", "",
                  ", ".join(f"{g} {v:.1f}%" for g, v in profile["groups_percent"].items()), "",
                  *(f"- {share}% {name}" for name, share in profile["top_kernels"])]
    if summary["nexus_pads"]:
        parts += ["", "## Nexus-Rank QKV micro-benchmark", "",
                  _table(summary["nexus_pads"], [("variant", "variant"), ("pad", "pad"), ("ms", "ms"),
                                                 ("speedup", "speed-up")])]
    if summary["find_batch"]:
        parts += ["", "## Largest micro-batch", "",
                  _table(summary["find_batch"], [("preset", "preset"), ("activation_checkpointing", "AC"),
                                                 ("compiled", "compile"), ("max_micro_batch", "max micro-batch"),
                                                 ("bounded", "lower bound"), ("peak_memory_gb_at_max", "GiB at max"),
                                                 ("device_memory_gb", "device GiB")])]
    if summary["plan"]:
        parts += ["", "## Plan stages: start -> first optimizer step", "",
                  _table(summary["plan"], [("run", "run"), ("stage", "stage"),
                                           ("stage_to_first_step_s", "to first step s"),
                                           ("steady_tokens_per_s", "steady tok/s"), ("wall_tokens_per_s", "wall tok/s"),
                                           ("stage_seconds", "stage s")])]
    if summary["skipped"]:
        parts += ["", "## Skipped or failed", "", *(f"- {line}" for line in summary["skipped"])]
    return "\n".join(parts) + "\n"


def main() -> None:
    out = Path(sys.argv[1])
    summary = summarise(out)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    text = markdown(summary)
    (out / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
