"""Summarise benchmarks/gpu_multi.sh: loss agreement and scaling efficiency of DDP and FSDP2.

Usage: python3 benchmarks/multi_gpu_summary.py OUT N
Reads OUT/{one,ddp,fsdp}/metrics.jsonl. Throughput is the median logged tokens/s after the
first third of the steps (compilation and warm-up excluded); every run has the same global batch.
"""

import json
import statistics
import sys
from pathlib import Path


def train_rows(run: Path) -> dict[int, dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {r["step"]: r for r in rows if "loss" in r and "tokens_per_s" in r}


def steady_tokens_per_s(rows: dict[int, dict]) -> float:
    last = max(rows)
    return statistics.median(r["tokens_per_s"] for s, r in rows.items() if s > last // 3)


def main(out: Path, n: int) -> None:
    one = train_rows(out / "one")
    base = steady_tokens_per_s(one)
    print(f"1 GPU (grad_accum {n}): {base:,.0f} tokens/s, final loss {one[max(one)]['loss']:.5f}")
    result = {"gpus": n, "one_gpu_tokens_per_s": base}
    for mode in ("ddp", "fsdp"):
        path = out / mode / "metrics.jsonl"
        if not path.exists():
            print(f"{mode}: no metrics (run failed)")
            continue
        rows = train_rows(out / mode)
        common = sorted(set(one) & set(rows))
        max_diff = max(abs(rows[s]["loss"] - one[s]["loss"]) for s in common)
        tps = steady_tokens_per_s(rows)
        eff = tps / (n * base)
        print(f"{mode} x{n}: {tps:,.0f} tokens/s, scaling efficiency {eff:.3f}, "
              f"max |loss - 1 GPU| over {len(common)} steps {max_diff:.2e}, "
              f"final loss {rows[max(rows)]['loss']:.5f}, mfu {rows[max(rows)].get('mfu', 0):.3f}")
        result[mode] = {"tokens_per_s": tps, "scaling_efficiency": eff, "max_loss_diff": max_diff,
                        "steps_compared": len(common)}
    (out / "summary.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
