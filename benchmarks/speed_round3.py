"""Helpers of ``benchmarks/gpu_speed_round3.sh`` (issue 23): the attention replay, the small-model
speed of ``compile: graphs``, and the summary of everything the script wrote.

    python benchmarks/speed_round3.py replay PROFILE_DIR --out replay.json
    python benchmarks/speed_round3.py small --out small.json [--shapes a,b] [--budget-s 100]
    python benchmarks/speed_round3.py summary OUT_DIR          # writes OUT_DIR/summary.md, summary.json

``replay``: the attention operators that ``growlm bench --profile`` recorded (``attention`` in
each profile JSON: the operator a compiled graph called, with its arguments' shapes, strides and
flags) are called again standalone with tensors of exactly those layouts, then with every tensor
made contiguous, and q/k/v of every forward signature go through ``F.scaled_dot_product_attention``
forward + backward under each backend (cuDNN, flash, memory-efficient). If transformers' call
replays as fast as ours, its slowness inside its graph is not the call's inputs; if it replays
slowly and the contiguous copy fast, the layout is the cause.

``small``: the experiments' small models (``experiments/recipe.py`` and
``experiments/growth_recipes.py`` full shapes) trained with random ids for the same steps from
the same weights, eager / ``compile: true`` / ``compile: graphs``: tokens/s with a CPU-GPU
synchronisation every step as ``growlm train`` does (``sync``) and without (``async``), MFU,
and the largest loss difference between modes over all steps (graphs vs true should be bf16
noise or zero: the same kernels).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# -- replay -------------------------------------------------------------------------------------


def _tensor(desc: dict[str, Any], device: Any) -> Any:
    import torch

    dtype = getattr(torch, desc["dtype"])
    dev = device if desc.get("device", "cuda") != "cpu" else "cpu"
    t = torch.empty_strided(desc["shape"], desc["stride"], dtype=dtype, device=dev)
    if dtype.is_floating_point:
        t.normal_(0, 0.5)
    else:
        t.zero_()
    return t


def _build(value: Any, device: Any, contiguous: bool) -> Any:
    if isinstance(value, dict) and "stride" in value:
        t = _tensor(value, device)
        return t.contiguous() if contiguous else t
    if isinstance(value, list):
        return [_build(v, device, contiguous) for v in value]
    return value


def _op(name: str) -> Any:
    import torch
    import torch.nn.functional as F

    if name == "F.scaled_dot_product_attention":
        return F.scaled_dot_product_attention
    base = name.split("::", 1)[1]
    packet, _, overload = base.partition(".")
    return getattr(getattr(torch.ops.aten, packet), overload or "default")


def _time(fn: Any, repeats: int = 20) -> float:
    """Milliseconds per call (CUDA events, after 3 warm-up calls; wall clock without CUDA)."""
    import torch

    for _ in range(3):
        fn()
    if not torch.cuda.is_available():
        tic = time.perf_counter()
        for _ in range(repeats):
            fn()
        return 1e3 * (time.perf_counter() - tic) / repeats
    torch.cuda.synchronize()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        fn()
    stop.record()
    torch.cuda.synchronize()
    return start.elapsed_time(stop) / repeats


def layout(desc: dict[str, Any]) -> str:
    """(batch, heads, seq, dim) tensors: stored head-major (BHSD) or as a transposed (B, S, H, D) view."""
    if len(desc.get("stride", [])) != 4:
        return "?"
    s = desc["stride"]
    kind = "BHSD" if s[1] >= s[2] else "BSHD-view"
    return f"{kind}{'' if desc.get('contiguous') else ' (non-contiguous)'} stride {s}"


def replay(profile_dir: Path, out: Path, device_name: str = "cuda") -> None:
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    device = torch.device(device_name)
    cuda = device.type == "cuda"
    rows: list[dict[str, Any]] = []
    for path in sorted(profile_dir.glob("profile-*.json")):
        profile = json.loads(path.read_text())
        attention = profile.get("attention") or {}
        in_graph = {r["op"]: r for r in attention.get("ops", [])}
        for sig in attention.get("signatures", []):
            row: dict[str, Any] = {"profile": profile["label"], "op": sig["op"], "count": sig["count"],
                                   "layouts": [layout(a) for a in sig["args"] if isinstance(a, dict)],
                                   "flags": {k: v for k, v in sig["kwargs"].items() if not isinstance(v, dict)},
                                   "scalars": [a for a in sig["args"] if not isinstance(a, (dict, list))],
                                   "in_graph_us_per_call": (in_graph.get(sig["op"].replace("F.", "aten::")) or
                                                            in_graph.get(sig["op"]) or {}).get("device_us_per_call")}
            op = _op(sig["op"])
            for variant, contiguous in (("as_recorded_ms", False), ("all_contiguous_ms", True)):
                try:
                    args = _build(sig["args"], device, contiguous)
                    kwargs = {k: _build(v, device, contiguous) for k, v in sig["kwargs"].items()}
                    with torch.no_grad():
                        row[variant] = _time(lambda op=op, args=args, kwargs=kwargs: op(*args, **kwargs))
                except Exception as error:  # one op's failure must not stop the others
                    row[variant] = None
                    row[f"{variant}_error"] = f"{type(error).__name__}: {str(error)[:300]}"
                finally:
                    args = kwargs = None
                    if cuda:
                        torch.cuda.empty_cache()
            if cuda and "backward" not in sig["op"] and len(sig["args"]) >= 3 and all(
                    isinstance(a, dict) and "stride" in a for a in sig["args"][:3]):
                row["sdpa_fwd_bwd_ms"] = _backend_sweep(sig, device, F, SDPBackend, sdpa_kernel)
            rows.append(row)
            print(json.dumps(row), flush=True)
    out.write_text(json.dumps({"device": torch.cuda.get_device_name(device) if cuda else "cpu", "rows": rows},
                              indent=2))


def _backend_sweep(sig: dict[str, Any], device: Any, F: Any, SDPBackend: Any, sdpa_kernel: Any) -> dict[str, Any]:
    """F.sdpa forward + backward on q, k, v of a recorded call (its layouts, then contiguous), per backend."""
    import torch

    result: dict[str, Any] = {}
    q0, k0, v0 = sig["args"][:3]
    gqa = q0["shape"][1] != k0["shape"][1]
    for contiguous in (False, True):
        for backend in ("CUDNN_ATTENTION", "FLASH_ATTENTION", "EFFICIENT_ATTENTION"):
            key = f"{backend.split('_')[0].lower()}{' contiguous' if contiguous else ''}"
            try:
                q, k, v = (_build(d, device, contiguous).requires_grad_() for d in (q0, k0, v0))

                def step(q: Any = q, k: Any = k, v: Any = v) -> None:
                    out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
                    out.backward(torch.ones_like(out))

                with sdpa_kernel([getattr(SDPBackend, backend)]):
                    result[key] = _time(step, repeats=10)
            except Exception as error:
                result[key] = f"{type(error).__name__}: {str(error)[:200]}"
            finally:
                q = k = v = None
                torch.cuda.empty_cache()
    return result


# -- small models ---------------------------------------------------------------------------------


def small_shapes(form: str = "full") -> dict[str, tuple[str, dict[str, Any], int, int]]:
    """name -> (preset, overrides, seq_len, micro_batch): the experiments' models of that form."""
    from growlm.experiments import growth_recipes, recipe

    shapes: dict[str, tuple[str, dict[str, Any], int, int]] = {}
    seq, mb = recipe.FORMS[form].seq_len, recipe.FORMS[form].micro_batch_size
    for arch, (preset, overrides) in recipe.MODELS[form].items():
        shapes[f"recipe-{arch}"] = (preset, dict(overrides), seq, mb)
    seq2, mb2 = growth_recipes.FORMS[form].seq_len, growth_recipes.FORMS[form].micro_batch_size
    for arch, by_name in growth_recipes.SHAPES[form].items():
        shapes[f"growth-{arch}"] = (growth_recipes.PRESETS[arch], dict(by_name["target"]), seq2, mb2)
    return shapes


def small(out: Path, names: list[str], modes: list[str], steps: int, timed: int, budget_s: float,
          device_name: str = "cuda", form: str = "full") -> None:
    import torch
    from torch._dynamo.utils import counters

    from growlm.models import model_class_for
    from growlm.models.accounting import model_cost
    from growlm.models.presets import build_config
    from growlm.system import measure_matmul_flops
    from growlm.training.compiling import compile_model

    device = torch.device(device_name)
    cuda = device.type == "cuda"
    peak = measure_matmul_flops(device) if cuda else 1e12  # CPU: a dry run of the logic, no MFU claim

    def synchronize() -> None:
        if cuda:
            torch.cuda.synchronize()

    shapes = small_shapes(form)
    began = time.monotonic()
    report: dict[str, Any] = {"device": torch.cuda.get_device_name(device) if cuda else "cpu", "peak_tflops": peak / 1e12,
                              "steps": steps, "timed_steps": timed, "rows": [], "skipped": []}
    for name in names:
        preset, overrides, seq, mb = shapes[name]
        config = build_config(preset, overrides)
        flops = model_cost(config, seq).train_flops_per_token
        generator = torch.Generator().manual_seed(0)
        batches = [torch.randint(0, config.vocab_size, (mb, seq + 1), generator=generator).to(device)
                   for _ in range(4)]
        losses: dict[str, list[float]] = {}
        accum: dict[str, list[tuple[float, float]]] = {}
        for mode in modes:
            if time.monotonic() - began > budget_s:
                report["skipped"].append(f"{name} {mode}")
                continue
            counters.clear()
            torch.manual_seed(0)
            model = model_class_for(config)(config).to(device).float().train()
            params = sum(p.numel() for p in model.parameters())
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=cuda)
            forward = compile_model(model, {"off": False, "true": True}.get(mode, mode), device,
                                    say=lambda m: print(m, file=sys.stderr))
            record: list[Any] = []
            run = (forward, model, optimizer)

            tic = time.perf_counter()
            train_step(*run, batches[0], record, True, device)
            first = time.perf_counter() - tic
            for i in range(1, steps):
                train_step(*run, batches[i % len(batches)], record, True, device)
            windows = {}
            for sync in (True, False):
                synchronize()
                tic = time.perf_counter()
                for i in range(timed):
                    train_step(*run, batches[(steps + i) % len(batches)], record, sync, device)
                synchronize()
                windows["sync" if sync else "async"] = mb * seq * timed / (time.perf_counter() - tic)
            losses[mode] = [float(v) for v in record]
            # gradient accumulation (2 micro-batches of the same shape, so no new graph): the gradient
            # norms show whether the first micro-batch's gradient survived the second replay
            accumulated = []
            for i in range(6):
                for micro in range(2):
                    tokens = batches[(i + micro) % len(batches)]
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                        half = forward(input_ids=tokens[:, :-1], shift_labels=tokens[:, 1:], use_cache=False).loss / 2
                    half.backward()
                    value = float(half)
                norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                accumulated.append((value, norm))
            accum[mode] = accumulated
            row = {"shape": name, "preset": preset, "params_m": round(params / 1e6, 2), "seq_len": seq,
                   "micro_batch": mb, "mode": mode, "first_step_s": round(first, 2),
                   "tokens_per_s_sync": round(windows["sync"]), "tokens_per_s_async": round(windows["async"]),
                   "mfu_sync": flops * windows["sync"] / peak, "mfu_async": flops * windows["async"] / peak,
                   "final_loss": losses[mode][-1],
                   "max_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0,
                   # graphs that Inductor declined to record (then the mode runs like compile: true)
                   "cudagraph_skips": int(counters["inductor"].get("cudagraph_skips", 0))}
            if mode != modes[0] and modes[0] in losses:
                row[f"max_abs_loss_diff_vs_{modes[0]}"] = max(
                    abs(a - b) for a, b in zip(losses[mode], losses[modes[0]], strict=True))
            if mode == "graphs" and "true" in losses:
                row["max_abs_loss_diff_vs_true"] = max(
                    abs(a - b) for a, b in zip(losses["graphs"], losses["true"], strict=True))
                row["accumulation_max_abs_loss_diff_vs_true"] = max(
                    abs(a[0] - b[0]) for a, b in zip(accum["graphs"], accum["true"], strict=True))
                row["accumulation_max_rel_grad_norm_diff_vs_true"] = max(
                    abs(a[1] - b[1]) / max(abs(b[1]), 1e-12) for a, b in zip(accum["graphs"], accum["true"], strict=True))
            row["accumulation_grad_norms"] = [round(n, 5) for _, n in accum[mode]]
            report["rows"].append(row)
            print(json.dumps(row), flush=True)
            del model, optimizer, forward, record, run
            torch._dynamo.reset()  # frees the CUDA-graph pools and compiled code before the next mode
            gc.collect()
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            out.write_text(json.dumps(report, indent=2))
    out.write_text(json.dumps(report, indent=2))


def train_step(forward: Any, model: Any, optimizer: Any, tokens: Any, record: list[Any], sync: bool,
               device: Any) -> None:
    """One step as ``growlm train`` takes it (bf16 autocast on CUDA, clipping, fused AdamW)."""
    import torch

    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        loss = forward(input_ids=tokens[:, :-1], shift_labels=tokens[:, 1:], use_cache=False).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    kept = loss.detach().clone()  # a CUDA-graph output is overwritten by the next replay
    record.append(kept)
    if sync:
        float(kept)  # what growlm train does every step (the logged loss, the finite check)


# -- summary ----------------------------------------------------------------------------------------

MATMUL, ATTENTION, ELEMENTWISE, OTHER = "matmul", "attention", "elementwise", "other"
FOUR = {"matmul": MATMUL, "attention": ATTENTION, "fused elementwise (compiler)": ELEMENTWISE,
        "copies": ELEMENTWISE, "loss": ELEMENTWISE, "optimizer": ELEMENTWISE}


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> list[str]:
    lines = ["| " + " | ".join(t for _, t in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(k)).replace("|", "/") for k, _ in columns) + " |" for r in rows]
    return lines


def summarise(out: Path) -> tuple[dict[str, Any], str]:
    s: dict[str, Any] = {}
    md: list[str] = ["# Speed, round three (issue 23)", ""]
    device = out / "device.txt"
    if device.exists():
        md += ["```", device.read_text().strip(), "```", ""]
    # (a) throughput
    bench = []
    for path in sorted(out.glob("bench-*.json")):
        for r in _load(path) or []:
            label = r["name"] + ("" if r.get("compiled") in (True, False) else f" compile {r.get('compiled')}")
            bench.append({"preset": r["preset"], "model": label, "tokens_per_s": round(r["tokens_per_s"]),
                          "mfu_percent": 100 * r["mfu"], "peak_tflops": r["peak_tflops"],
                          "ms_per_step": 1e3 * r["seconds_per_step"], "memory_gb": r["max_memory_gb"],
                          "first_step_s": r["first_step_s"], "commit": r.get("commit")})
    s["bench"] = bench
    by = {(r["preset"], r["model"]): r for r in bench}
    targets = []
    for preset, goal in (("nexus-240m", 62.0), ("tokenformer-240m", 55.0)):
        for label in ("growlm", "growlm compile graphs"):
            if (preset, label) in by:
                mfu = by[(preset, label)]["mfu_percent"]
                targets.append({"target": f"{preset} >= {goal}% MFU ({label})", "measured": f"{mfu:.1f}%",
                                "met": mfu >= goal})
    if ("qwen3-240m", "growlm") in by and ("qwen3-240m", "transformers") in by:
        ratio = by[("qwen3-240m", "growlm")]["tokens_per_s"] / by[("qwen3-240m", "transformers")]["tokens_per_s"]
        s["qwen3_ratio"] = ratio
        targets.append({"target": "qwen3-240m >= 1.5x transformers", "measured": f"{ratio:.3f}x", "met": ratio >= 1.5})
    s["targets"] = targets
    if bench:
        md += ["## (a) Throughput, `growlm bench PRESET --seq-len 4096 --micro-batch 8 --steps 10 --warmup 4`", ""]
        md += table(bench, [("preset", "preset"), ("model", "model"), ("tokens_per_s", "tokens/s"),
                            ("mfu_percent", "MFU %"), ("peak_tflops", "matmul TFLOP/s"), ("ms_per_step", "ms/step"),
                            ("memory_gb", "GiB"), ("first_step_s", "first step s"), ("commit", "commit")])
        md += ["", *table(targets, [("target", "target"), ("measured", "measured"), ("met", "met")]), ""]
    # (b) profiles and (c) attention
    s["profiles"] = {}
    for path in sorted((out / "profile").glob("profile-*.json")):
        p = _load(path)
        if not p:
            continue
        steps = p["steps"]
        total_us = p["time_per_step_ms"] * 1e3 * steps
        four: dict[str, float] = {}
        for group, v in p["groups"].items():
            four[FOUR.get(group, OTHER)] = four.get(FOUR.get(group, OTHER), 0.0) + v["time_us"]
        top = [{"kernel": k["name"][:110], "group": FOUR.get(k["group"], OTHER), "fine_group": k["group"],
                "ms_per_step": k["time_us"] / steps / 1e3, "share_percent": 100 * k["share"],
                "calls_per_step": k["calls"] / steps} for k in p["top_kernels"][:20]]
        s["profiles"][p["label"]] = {"ms_per_step": p["time_per_step_ms"],
                                     "groups_ms_per_step": {g: t / steps / 1e3 for g, t in four.items()},
                                     "groups_percent": {g: 100 * t / total_us for g, t in four.items()},
                                     "top20": top, "attention": p.get("attention")}
        md += [f"## (b) Profile {p['label']}: {p['time_per_step_ms']:.1f} ms device time per step", "",
               ", ".join(f"{g} {t / steps / 1e3:.1f} ms ({100 * t / total_us:.1f}%)"
                         for g, t in sorted(four.items(), key=lambda x: -x[1])), "",
               *table(top, [("kernel", "kernel (top 20 by time)"), ("group", "group"), ("fine_group", "detail"),
                            ("ms_per_step", "ms/step"), ("share_percent", "%"), ("calls_per_step", "calls/step")]), ""]
        att = p.get("attention") or {}
        if att.get("ops"):
            md += [f"### (c) Attention calls of {p['label']}", "",
                   *table([{"op": o["op"], "calls_per_step": o["calls_per_step"], "us_per_call": o["device_us_per_call"],
                            "kernels": "; ".join(f"{n[:70]} x{v['launches']} {v['time_us'] / o['calls']:.0f} us/call"
                                                 for n, v in list(o["kernels"].items())[:3])}
                           for o in att["ops"]],
                          [("op", "operator"), ("calls_per_step", "calls/step"), ("us_per_call", "device us/call"),
                           ("kernels", "kernels")]), ""]
            for sig in att.get("signatures", []):
                tensors = [a for a in sig["args"] if isinstance(a, dict)]
                md.append(f"- `{sig['op']}` x{sig['count']}: "
                          + "; ".join(f"{a['dtype']} {a['shape']} stride {a['stride']}"
                                      f"{'' if a['contiguous'] else ' NONCONTIG'}" for a in tensors[:6])
                          + f"; scalars {[a for a in sig['args'] if not isinstance(a, (dict, list))]}"
                          + f"; kwargs { {k: v for k, v in sig['kwargs'].items() if not isinstance(v, dict)} }")
            md.append("")
    replayed = _load(out / "attention-replay.json")
    if replayed:
        s["attention_replay"] = replayed
        md += ["## (c) Attention calls replayed standalone (ms per call)", "",
               *table([{**r, "backends": json.dumps(r.get("sdpa_fwd_bwd_ms")) if r.get("sdpa_fwd_bwd_ms") else "",
                        "layout": " / ".join(r["layouts"][:3])} for r in replayed["rows"]],
                      [("profile", "profile"), ("op", "op"), ("count", "calls"), ("in_graph_us_per_call", "in graph us"),
                       ("as_recorded_ms", "replay ms"), ("all_contiguous_ms", "contiguous ms"), ("layout", "q / k / v"),
                       ("backends", "F.sdpa fwd+bwd ms per backend")]), ""]
    # (d) small models
    smallr = _load(out / "small.json")
    if smallr:
        s["small"] = smallr
        md += [f"## (d) Small models, eager / compile: true / compile: graphs ({smallr['steps']} + 2x"
               f"{smallr['timed_steps']} steps, random ids, matmul {smallr['peak_tflops']:.0f} TFLOP/s)", "",
               *table([{**r, "mfu_sync": 100 * r["mfu_sync"], "mfu_async": 100 * r["mfu_async"]} for r in smallr["rows"]],
                      [("shape", "shape"), ("params_m", "M params"), ("seq_len", "seq"), ("micro_batch", "batch"),
                       ("mode", "mode"), ("tokens_per_s_sync", "tok/s (sync/step)"), ("mfu_sync", "MFU %"),
                       ("tokens_per_s_async", "tok/s (no sync)"), ("mfu_async", "MFU % no sync"),
                       ("first_step_s", "first step s"), ("cudagraph_skips", "graph skips"),
                       ("max_abs_loss_diff_vs_off", "max abs loss diff vs eager"),
                       ("max_abs_loss_diff_vs_true", "max abs loss diff vs true"),
                       ("accumulation_max_rel_grad_norm_diff_vs_true", "accum. grad-norm rel. diff vs true")]), ""]
        if smallr.get("skipped"):
            md += [f"not run (budget): {', '.join(smallr['skipped'])}", ""]
    # real trainer with graphs
    trainer_rows = []
    for path in sorted(out.glob("train-*.summary.json")):
        t = _load(path) or {}
        metrics = _load(path.with_name(path.name.replace(".summary.json", ".losses.json"))) or []
        trainer_rows.append({"run": path.name.replace(".summary.json", ""), "steady_tokens_per_s":
                             t.get("steady_tokens_per_s"), "time_to_first_step_s": t.get("time_to_first_step_s"),
                             "first_step_s": t.get("first_step_s"), "final_loss": metrics[-1][1] if metrics else None,
                             "logged": len(metrics)})
    if trainer_rows:
        md += ["## (d) `growlm train`, compile: true vs graphs", "",
               *table(trainer_rows, [("run", "run"), ("steady_tokens_per_s", "steady tok/s"),
                                     ("time_to_first_step_s", "to first step s"), ("first_step_s", "first step s"),
                                     ("final_loss", "final loss"), ("logged", "logged steps")])]
        diff = _load(out / "train-graphs-diff.json")
        if diff:
            md += ["", f"max abs(loss(graphs) - loss(true)) over logged steps: {diff.get('max_abs_loss_diff')}"]
        md.append("")
        s["trainer"] = trainer_rows
    # (e) determinism
    det = _load(out / "determinism.json")
    if det:
        s["determinism"] = det
        md += ["## (e) Determinism (benchmarks/gpu_determinism.sh)", "", "```",
               json.dumps({k: det.get(k) for k in ("verdict", "tokens_per_s", "final_train_loss") if k in det},
                          indent=1)[:3000], "```", ""]
    # (f) data prepare
    prep = {n: _load(out / f"data-prepare-{n}.json") for n in ("many", "one")}
    if any(prep.values()):
        s["data_prepare"] = prep
        rates = {}
        for rep in prep.values():
            for r in (rep or {}).get("runs", []):
                rates[(r["corpus"], r["workers"])] = r
                md.append(f"- data prepare, {r['corpus']} corpus, {r['workers']} worker(s): {r['mb_per_s']:.2f} MB/s, "
                          f"{r['tokens_per_s']:,.0f} tokens/s ({r['seconds']:.1f} s, "
                          f"{(rep['corpora'][r['corpus']]['mb'])} MB)")
        many = [r for (c, w), r in rates.items() if w > 1]
        one = [r for (c, w), r in rates.items() if w == 1]
        if many and one:
            speedup = many[0]["mb_per_s"] / one[0]["mb_per_s"]
            s["data_prepare_speedup"] = speedup
            md += [f"- speed-up {many[0]['workers']} workers / 1 worker: **{speedup:.2f}x** (goal >= 8x)"]
        md.append("")
    # (g) first step
    first = []
    for path in sorted(out.glob("first-step-*.json")):
        t = _load(path) or {}
        first.append({"run": path.stem.removeprefix("first-step-"), "time_to_first_step_s": t.get("time_to_first_step_s"),
                      "first_step_s": t.get("first_step_s"), "process_s": t.get("process_s"),
                      "steady_tokens_per_s": t.get("steady_tokens_per_s")})
    if first:
        s["first_step"] = first
        md += ["## (g) `growlm train` start -> first optimizer step (2 steps; seq 4096 x 8 unless FIRST_SEQ/FIRST_MB)", "",
               *table(first, [("run", "run"), ("time_to_first_step_s", "trainer start -> first step s"),
                              ("first_step_s", "first step s"), ("process_s", "process wall s"),
                              ("steady_tokens_per_s", "steady tok/s")]), ""]
    skipped = out / "skipped.txt"
    if skipped.exists() and skipped.read_text().strip():
        s["skipped"] = skipped.read_text().splitlines()
        md += ["## Skipped or failed", "", *(f"- {line}" for line in s["skipped"]), ""]
    times = out / "sections.txt"
    if times.exists():
        md += ["## Section wall times", "", "```", times.read_text().strip(), "```", ""]
    return s, "\n".join(md) + "\n"


def trainer_losses(run: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r and "step" in r]


def compare_runs(a: Path, b: Path, out: Path) -> None:
    la, lb = dict(trainer_losses(a)), dict(trainer_losses(b))
    common = sorted(set(la) & set(lb))
    diff = max((abs(la[k] - lb[k]) for k in common), default=math.nan)
    out.write_text(json.dumps({"steps_compared": len(common), "max_abs_loss_diff": diff,
                               "median_abs_loss_diff": statistics.median([abs(la[k] - lb[k]) for k in common])
                               if common else None}, indent=2))


def main() -> None:
    from growlm.system import configure_process

    configure_process()  # an entry point: compile caches, recompile limit 64 (many models compile here)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("replay")
    p.add_argument("profile_dir", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="cuda")
    p = sub.add_parser("small")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--shapes", default="recipe-nexus,growth-llama,growth-tokenformer,recipe-qwen3")
    p.add_argument("--modes", default="off,true,graphs")
    p.add_argument("--steps", type=int, default=8, help="untimed steps (compilation, warm-up)")
    p.add_argument("--timed", type=int, default=30, help="timed steps per window (sync, then async)")
    p.add_argument("--budget-s", type=float, default=100.0, help="start no new (shape, mode) after this")
    p.add_argument("--device", default="cuda")
    p.add_argument("--form", default="full", choices=("full", "quick"), help="quick: the CPU test's tiny shapes")
    p = sub.add_parser("losses")
    p.add_argument("run", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("compare")
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("summary")
    p.add_argument("out_dir", type=Path)
    args = parser.parse_args()
    if args.command == "replay":
        replay(args.profile_dir, args.out, args.device)
    elif args.command == "small":
        small(args.out, args.shapes.split(","), args.modes.split(","), args.steps, args.timed, args.budget_s,
              args.device, args.form)
    elif args.command == "losses":
        args.out.write_text(json.dumps(trainer_losses(args.run)))
    elif args.command == "compare":
        compare_runs(args.a, args.b, args.out)
    else:
        summary, text = summarise(args.out_dir)
        (args.out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        (args.out_dir / "summary.md").write_text(text)
        print(text)


if __name__ == "__main__":
    main()
