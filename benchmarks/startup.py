"""Start-up time of the ``growlm`` command: how long a command takes before it does any work.

    python benchmarks/startup.py --out startup.json            # median of 5 runs of each command
    python benchmarks/startup.py --out x.json --runs 3 --src /path/to/other/checkout/src

Each command runs in a fresh process (``python -m growlm.cli.main ...``, the same module as
the ``growlm`` script) and the wall time from start to exit is taken; the figure is the
median over ``--runs`` runs, after one untimed run that warms the file cache, in wall
seconds and in CPU seconds (user + system; on a busy machine the figure to compare). ``--src``
times another checkout (its ``src`` folder goes first on ``PYTHONPATH``), so a before/after
pair is measured on the same machine in the same minutes.

Commands: ``--help`` (nothing but the parser), ``grow --help`` (a subcommand's help),
``--version`` and ``models`` (every preset's exact parameter count and FLOPs). ``models``
counts parameters on built models, which needs torch and transformers' model classes, and
keeps the rows under ``$GROWLM_CACHE`` keyed by the model code: ``models`` is timed with the
rows kept (as every run after the first), ``models (first run)`` with an empty
``$GROWLM_CACHE`` each time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = {
    "--help": ["--help"],
    "grow --help": ["grow", "--help"],
    "--version": ["--version"],
    "models": ["models"],
    "models (first run)": ["models"],
}


def time_command(args: list[str], env: dict[str, str], runs: int, first_run: bool) -> dict[str, object]:
    command = [sys.executable, "-m", "growlm.cli.main", *args]
    subprocess.run(command, env=env, capture_output=True)  # warm the file cache (and keep the rows)
    seconds, cpu = [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as empty:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            done = subprocess.run(command, env={**env, "GROWLM_CACHE": empty} if first_run else env,
                                  capture_output=True)
            seconds.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    # an older growlm may lack a command (--version): its time is then that of the error.
    # CPU seconds (user + system) are the figure to compare on a busy machine: wall time
    # there measures the other processes too.
    return {"median_s": round(statistics.median(seconds), 3), "min_s": round(min(seconds), 3),
            "max_s": round(max(seconds), 3), "median_cpu_s": round(statistics.median(cpu), 3), "runs": runs,
            "returncode": done.returncode}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON file for the results")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--src", help="the src/ folder of the growlm to time (default: the one importable here)")
    parser.add_argument("--commands", nargs="+", choices=list(COMMANDS), default=list(COMMANDS))
    args = parser.parse_args()
    env = dict(os.environ)
    if args.src:
        env["PYTHONPATH"] = os.pathsep.join([str(Path(args.src).resolve()), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep)
    results = {}
    for name in args.commands:
        results[name] = time_command(COMMANDS[name], env, args.runs, first_run="first run" in name)
        r = results[name]
        print(f"growlm {name:<20} median {r['median_s']:.2f} s wall (min {r['min_s']:.2f}, max {r['max_s']:.2f}), "
              f"{r['median_cpu_s']:.2f} s CPU, {args.runs} runs")
    record = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "python": platform.python_version(),
              "machine": platform.machine(), "cpus": os.cpu_count(), "load_average": os.getloadavg(),
              "src": args.src, "commands": results}
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
