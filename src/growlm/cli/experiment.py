"""``growlm analyze``, ``experiment``, ``demo``: growth dynamics and the papers' experiments."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from growlm.errors import GrowlmError


def add_parsers(sub: Any) -> None:
    """The ``analyze``, ``experiment``, ``demo`` subcommands: their parsers, each with its handler."""
    p = sub.add_parser("analyze", help="growth dynamics of grown runs: NOC, Z, theta, rho, R, PCA, Grassmann, "
                                       "periodicity, ln PPL vs |ln R| (docs/analysis.md)")
    p.add_argument("runs", nargs="+", metavar="RUN", help="plan stage folders or runs continued from a grown model")
    p.add_argument("--out", required=True, help="output folder (dynamics.json, dynamics.csv, tables.md, PNGs)")
    p.add_argument("--names", nargs="+", help="a label per run (default: folder names)")
    p.add_argument("--tasks", nargs="+", default=["paper5"],
                   help="benchmarks for the performance ΔP (default paper5; 'none' to skip)")
    p.add_argument("--limit", type=int, default=100, help="first N documents of each task (default 100)")
    p.add_argument("--ppl-data", help="prepared data folder for validation perplexity (default: each run's data)")
    p.add_argument("--ppl-batches", type=int, default=16, help="perplexity: at most this many batches")
    p.add_argument("--seq-len", type=int, help="perplexity window (default: the run's training seq_len)")
    p.add_argument("--benchmark-points", choices=["all", "ends"], default="all",
                   help="benchmarks on every snapshot (all) or on the growth point and the last one (ends)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="auto")
    p.add_argument("--benchmarks", help="benchmark files (default: $GROWLM_BENCHMARKS or ../shared/benchmarks)")
    p.add_argument("--max-values", type=int, default=20000, help="NOC: at most this many values per set")
    p.add_argument("--workers", type=int, default=1, help="processes for the weight statistics (default 1)")
    p.add_argument("--state", help="features of the state vector for PCA (of theta, rho, noc, z, perf; default "
                   "theta,rho,perf with --definitions paper, rho,noc,perf with growlm)")
    p.add_argument("--definitions", choices=["paper", "growlm"], default="paper",
                   help="paper (default): NOC and Z base vs grown model, θ = ΔZ/Z₀, ρ = ΔNOC/NOC₀, R = |(θ, ρ)|; "
                   "growlm: new vs old entries, θ and ρ in weight space, R max-normalised (docs/analysis.md)")
    p.add_argument("--pooling", choices=["model", "grown", "layer", "tensor"], default="layer",
                   help="paper definitions: which base and grown weights NOC and Z compare (default layer)")
    p.add_argument("--skip", nargs="+", choices=["pca", "harmonic", "fisher", "law"], help="statistics to leave out")
    p.set_defaults(func=cmd_analyze)

    from growlm.experiments import EXPERIMENTS
    p = sub.add_parser("experiment", help="reproduce a paper's experiment (list, NAME [--quick], or publish)")
    p.add_argument("name", choices=[*EXPERIMENTS, "list", "publish"], metavar="NAME",
                   help=f"one of {', '.join(EXPERIMENTS) or '(none yet)'}; 'list' describes them; 'publish' "
                        "copies a finished one (--out) into --results-md")
    p.add_argument("--quick", action="store_true", help="the small CPU form (minutes), as CI runs it")
    p.add_argument("--seeds", type=int, help="number of seeds (0, 1, ...; default: the experiment's, at least 3)")
    p.add_argument("--out", help="output folder (default runs/experiments/NAME[-quick]); finished runs in it "
                                 "are reused, so an interrupted experiment continues")
    p.add_argument("--device", default="auto")
    p.add_argument("--shared", help="the shared material folder (default: ../shared or $GROWLM_SHARED)")
    p.add_argument("--data-root", help="where prepared corpus slices are cached (default data/experiments)")
    p.add_argument("--benchmarks", help="benchmark files (default: $GROWLM_BENCHMARKS or SHARED/benchmarks)")
    p.add_argument("--results-md", help="also publish the report into this Markdown file (e.g. docs/results.md)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="an experiment option (repeatable), e.g. --set base_tokens=4000000; see docs/experiments.md")
    p.set_defaults(func=cmd_experiment)

    p = sub.add_parser("demo", help="train, grow, verify, continue, compare: the whole story on a CPU")
    p.add_argument("--out", default="growlm-demo", help="output folder (report.md, curves.png, the runs)")
    p.add_argument("--shared", help="the shared material folder (default: ../shared or $GROWLM_SHARED)")
    p.add_argument("--quick", action="store_true", help="a much shorter run (used by the tests)")
    p.set_defaults(func=cmd_demo)


def cmd_analyze(args: argparse.Namespace) -> None:
    from growlm.analysis import AnalysisSettings, analyse

    tasks = [] if args.tasks == ["none"] else args.tasks
    settings = AnalysisSettings(tasks=tasks, limit=args.limit, ppl_data=args.ppl_data, ppl_batches=args.ppl_batches,
                                batch_size=args.batch_size, device=args.device, benchmarks=args.benchmarks,
                                max_values=args.max_values, state=args.state.split(",") if args.state else None,
                                skip=args.skip or [], seq_len=args.seq_len, benchmark_points=args.benchmark_points,
                                workers=args.workers, definitions=args.definitions, pooling=args.pooling)
    report = analyse(args.runs, args.out, settings, names=args.names)
    print(f"wrote {Path(args.out) / 'dynamics.json'}, dynamics.csv, {Path(report['tables']).name} and "
          f"{len(report['figures'])} figures to {args.out}")


def cmd_experiment(args: argparse.Namespace) -> None:
    from growlm.experiments import EXPERIMENTS, experiment_module, publish, run_experiment
    from growlm.overrides import parse_assignments

    if args.name == "list":
        for name in EXPERIMENTS:
            print(f"{name:<20} {experiment_module(name).DESCRIPTION}")
        return
    if args.name == "publish":
        if not args.out:
            raise GrowlmError("growlm experiment publish needs --out DIR (a finished experiment's folder)")
        key = publish(args.out, args.results_md or "docs/results.md")
        print(f"published {key} from {args.out} into {args.results_md or 'docs/results.md'}")
        return
    path, _ = run_experiment(args.name, out=args.out, quick=args.quick, seeds=args.seeds, device=args.device,
                             shared=args.shared, data_root=args.data_root, benchmarks=args.benchmarks,
                             results_md=args.results_md, argv=sys.argv[1:],
                             options=parse_assignments(args.set))
    print(f"wrote {path} (tables, figures and raw JSON beside it)"
          + (f"; published into {args.results_md}" if args.results_md else ""))


def cmd_demo(args: argparse.Namespace) -> None:
    from growlm.demo import run_demo

    run_demo(Path(args.out), shared=Path(args.shared) if args.shared else None, quick=args.quick)
