"""`growlm data prepare` throughput, MB/s and tokens/s, for 1 and N workers, on two synthetic corpora.

    python benchmarks/data_prepare.py --out data_prepare.json                  # 1 and all cores, 32 MB each
    python benchmarks/data_prepare.py --out x.json --mb 4 --workers 1,2        # a quick check

Both corpora are cut from the shared corpus's training text (``$GROWLM_SHARED`` or
``../shared``), written as plain ``.jsonl``; the shared corpus holds about 55 MB of text, so
larger ``--mb`` needs ``--repeat`` (the documents again, in the same order: the same work
per byte, which is all a throughput figure needs; 16 workers need a few hundred MB before
process start-up stops mattering):

* ``small``: many small documents (paragraphs grouped to about 1 kB), in 4 files;
* ``huge``: a few huge documents (4 documents of MB/4 each), in 1 file.

Each configuration runs `growlm data prepare` in a fresh process and the figures are
those it records in meta.json: UTF-8 text bytes and tokens written over the seconds
spent reading, tokenizing and writing (tokenizer loading excluded). N workers use N
cores: the 1-worker run has the tokenizers library's threads off
(``TOKENIZERS_PARALLELISM=false``), so it is the one-core rate. ``baseline`` is the old
implementation's way: one process, the tokenizer's own threads on, documents tokenized
whole (``--piece-chars 0``). Every run of a corpus must write the same token shards
(checked, by SHA-256): pieces and workers change the speed, never the tokens.

No ``datasets`` package is needed.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from growlm.data.prepare import default_workers
from growlm.data.shared import TOKENIZER_32K, locate_shared


def corpus_texts(shared: Path) -> list[str]:
    """Training documents of every source, interleaved (so that any prefix mixes the sources)."""
    sources = []
    for path in sorted((shared / "corpus" / "train").glob("*.jsonl.gz")):
        with gzip.open(path, "rt") as lines:
            sources.append([json.loads(line)["text"] for line in lines])
    return [docs[i] for i in range(max(map(len, sources))) for docs in sources if i < len(docs)]


def build_corpora(shared: Path, folder: Path, megabytes: float, repeat: bool = False,
                  names: tuple[str, ...] = ("small", "huge")) -> dict[str, dict]:
    texts = corpus_texts(shared)
    budget = int(megabytes * 1e6)
    available = sum(len(t.encode()) for t in texts)
    if budget > available:
        if not repeat:
            raise SystemExit(f"--mb {megabytes}: the shared corpus holds only {available / 1e6:.1f} MB of text "
                             "(add --repeat to cycle through it)")
        texts = texts * -(-budget // available)
    info = {}

    small, current, size = [], [], 0
    for text in texts if "small" in names else []:
        for paragraph in text.split("\n\n"):
            current.append(paragraph)
            if sum(map(len, current)) >= 1000:
                small.append("\n\n".join(current))
                size += len(small[-1].encode())
                current = []
            if size >= budget:
                break
        if size >= budget:
            break
    if "small" in names:
        (folder / "small").mkdir(parents=True, exist_ok=True)
        per_file = -(-len(small) // 4)
        for k in range(4):
            with open(folder / "small" / f"part-{k}.jsonl", "w") as out:
                out.writelines(json.dumps({"text": t}) + "\n" for t in small[k * per_file: (k + 1) * per_file])
        info["small"] = {"documents": len(small), "mb": round(size / 1e6, 2), "files": 4}
    if "huge" not in names:
        for corpus in info.values():
            corpus["shared_text_repeated"] = budget > available
        return info

    cut = bytearray()
    for text in texts:  # the first `budget` bytes of the joined text, whole documents
        cut += text.encode() + b"\n"
        if len(cut) >= budget:
            break
    joined = cut.decode()
    quarter = -(-len(joined) // 4)
    huge = [joined[k * quarter: (k + 1) * quarter] for k in range(4)]
    (folder / "huge").mkdir(parents=True, exist_ok=True)
    with open(folder / "huge" / "docs.jsonl", "w") as out:
        out.writelines(json.dumps({"text": t}) + "\n" for t in huge)
    info["huge"] = {"documents": 4, "mb": round(sum(len(t.encode()) for t in huge) / 1e6, 2), "files": 1}
    for corpus in info.values():
        corpus["shared_text_repeated"] = budget > available
    return info


def shard_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.bin")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def run_prepare(inputs: Path, tokenizer: Path, out: Path, workers: int, piece_chars: int | None,
                threads: bool, batch_bytes: int) -> dict:
    """One `growlm data prepare` in a fresh process; ``threads``: the tokenizers library's own thread pool."""
    command = [sys.executable, "-m", "growlm.cli.main", "data", "prepare", str(inputs), "--tokenizer",
               str(tokenizer), "--out", str(out), "--val-fraction", "0", "--workers", str(workers), "--overwrite"]
    if piece_chars is not None:
        command += ["--piece-chars", str(piece_chars)]
    command += ["--batch-bytes", str(batch_bytes)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "true" if threads else "false"}
    started = time.time()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    meta = json.loads((out / "meta.json").read_text())
    if meta["workers"] != workers:
        raise SystemExit(f"asked for {workers} workers, data prepare used {meta['workers']}: make --mb larger")
    return {"workers": meta["workers"], "batch_bytes": batch_bytes, "piece_chars": meta["piece_chars"], "tokenizer_threads": threads,
            "seconds": meta["seconds"], "process_seconds": round(time.time() - started, 2),
            "mb_per_s": meta["text_mb_per_s"], "tokens_per_s": meta["tokens_per_s"],
            "tokens": meta["splits"]["train"]["tokens"], "sha256": shard_digest(out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--mb", type=float, default=32.0, help="text per corpus, in MB (default 32)")
    parser.add_argument("--workers", default=None, help="comma-separated worker counts (default: 1,ALL_CORES)")
    parser.add_argument("--repeat", action="store_true",
                        help="cycle through the shared corpus when --mb exceeds it (module doc)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the whole-document one-process run")
    parser.add_argument("--work", default=None, help="scratch folder (default: beside --out)")
    parser.add_argument("--shared", default=None)
    parser.add_argument("--corpora", default="small,huge", help="which corpora to run (default: small,huge)")
    args = parser.parse_args()

    shared = locate_shared(args.shared)
    tokenizer = shared / TOKENIZER_32K
    cores = default_workers()
    counts = [int(w) for w in args.workers.split(",")] if args.workers else sorted({1, cores})
    work = Path(args.work or Path(args.out).with_suffix(".work"))
    names = tuple(args.corpora.split(","))
    if not names or not set(names) <= {"small", "huge"}:
        raise SystemExit(f"--corpora must name small and/or huge, got {args.corpora!r}")
    corpora = build_corpora(shared, work / "corpora", args.mb, args.repeat, names)
    runs, summary = [], {}
    # 1 MiB work items, or smaller so that every worker gets at least 8 of them (small --mb runs)
    batch_bytes = int(min(1 << 20, args.mb * 1e6 / (8 * max(counts))))
    for name in corpora:
        # (workers, piece_chars, tokenizer threads, kind): one worker is one core; the baseline is the old way
        configs = [(w, None, False, "workers") for w in counts]
        if not args.no_baseline:
            configs.append((1, 0, True, "baseline"))
        for workers, piece_chars, threads, kind in configs:
            label = (f"{name}, {workers} worker(s)" if kind == "workers" else
                     f"{name}, baseline (1 process, tokenizer threads, whole documents)")
            print(f"{label} ...", file=sys.stderr, flush=True)
            result = {"corpus": name, "kind": kind, **run_prepare(work / "corpora" / name, tokenizer, work / "out",
                                                                  workers, piece_chars, threads,
                                                                  batch_bytes)}
            print(f"  {result['mb_per_s']:.2f} MB/s, {result['tokens_per_s']:,.0f} tokens/s "
                  f"({result['seconds']:.1f} s)", file=sys.stderr, flush=True)
            runs.append(result)
        mine = [r for r in runs if r["corpus"] == name]
        scaled = [r for r in mine if r["kind"] == "workers"]
        one = min(scaled, key=lambda r: r["workers"])
        most = max(scaled, key=lambda r: r["workers"])
        summary[name] = {"identical_tokens_in_every_run": len({r["sha256"] for r in mine}) == 1,
                         "mb_per_s": {str(r["workers"]): r["mb_per_s"] for r in scaled},
                         "tokens_per_s": {str(r["workers"]): r["tokens_per_s"] for r in scaled},
                         f"speedup_{most['workers']}_over_{one['workers']}_workers": round(
                             most["mb_per_s"] / one["mb_per_s"], 2)}
        base = next((r for r in mine if r["kind"] == "baseline"), None)
        if base:
            summary[name]["baseline_mb_per_s"] = base["mb_per_s"]
            summary[name][f"speedup_{most['workers']}_workers_over_baseline"] = round(
                most["mb_per_s"] / base["mb_per_s"], 2)
    report = {
        "benchmark": "growlm data prepare",
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "host": {"cores": cores, "cpu_count": os.cpu_count(), "machine": platform.machine(),
                 "python": platform.python_version(), "processor": platform.processor()},
        "tokenizer": str(tokenizer),
        "corpora": corpora,
        "runs": runs,
        "summary": summary,
    }
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
