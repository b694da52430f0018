"""``growlm analyze RUN [RUN ...] --out DIR``: the growth-dynamics statistics of grown runs.

Two sets of definitions (``AnalysisSettings.definitions``):

* ``paper`` (default): the Nexusformer paper's, recovered from its own tables: NOC and Z (the
  two-sided Mann-Whitney p-value) between the base model's and the grown model's weights
  (pooled per layer by default, ``regions.base_vs_grown``), θ = ΔZ/Z₀ and ρ = ΔNOC/NOC₀ against
  the run's own growth point, R = sqrt(θ² + ρ²) with no normalisation across runs, the state
  (θ, ρ, ΔAvg/Avg₀);
* ``growlm``: the earlier ones: NOC and the Mann-Whitney z score of the new vs the old entries of
  the grown matrices, theta and rho in weight space (``regions.py``), R from max-normalised θ, ρ.

Per run and snapshot also the benchmark average and validation perplexity through ``growlm eval``
(``growlm.evaluation.runner``), and from them ΔP. Over all runs of one call: R, the PCA of the
states with loadings,
each state's Grassmann and Euclidean distance to the growth point, a harmonic regression and
Fisher's g test of each run's R series, and the law ln PPL = a |ln R| + b across runs with
leave-one-run-out predictions. Writes ``dynamics.json``, ``dynamics.csv``, ``tables.md`` and
the figures (``figures.py``). Every recipe is spelled out in ``docs/analysis.md``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from growlm.analysis.regions import (
    POOLINGS,
    WeightGeometry,
    arrays,
    base_state,
    base_vs_grown,
    grown_matrices,
    value_sets,
)
from growlm.analysis.runs import RunSource, resolve_run
from growlm.analysis.statistics import (
    NOC_GRID,
    NOC_MAX_VALUES,
    AnalysisError,
    fisher_g,
    grassmann_distance,
    harmonic_regression,
    law_fit,
    lifted_plane,
    mann_whitney_z,
    need,
    overlap_coefficient,
    pca_states,
    radial_energy,
    radius_bands,
)
from growlm.errors import unknown_key_message
from growlm.models import storage

logger = logging.getLogger(__name__)

STATISTICS = ("pca", "harmonic", "fisher", "law")
FEATURES = ("theta", "rho", "noc", "z", "perf")
DEFAULT_STATE = ("rho", "noc", "perf")  # growlm definitions
PAPER_STATE = ("theta", "rho", "perf")  # paper definitions: (ΔZ/Z₀, ΔNOC/NOC₀, ΔAvg/Avg₀), Table 5
DEFINITIONS = ("paper", "growlm")


@dataclass
class AnalysisSettings:
    tasks: list[str] = field(default_factory=lambda: ["paper5"])  # [] skips the benchmarks
    limit: int | None = 100  # documents per task (the first N in file order)
    ppl_data: str | None = None  # prepared data folder for perplexity; default: each run's own data
    ppl_batches: int = 16
    seq_len: int | None = None  # perplexity window; default: each run's training seq_len
    benchmark_points: str = "all"  # "all" snapshots, or only the growth point and the last one ("ends")
    workers: int = 1  # > 1: weight statistics of the snapshots in this many processes
    batch_size: int = 16
    device: str = "auto"
    benchmarks: str | None = None
    max_values: int = NOC_MAX_VALUES
    grid: int = NOC_GRID
    state: list[str] | None = None  # default: PAPER_STATE or DEFAULT_STATE, by definitions
    skip: list[str] = field(default_factory=list)  # statistics of STATISTICS to leave out
    definitions: str = "paper"  # "paper" or "growlm" (see the module docstring)
    pooling: str = "layer"  # paper definitions: how base and grown weights are grouped (regions.POOLINGS)
    trend_degree: int = 2  # the harmonic regression's polynomial trend (lowered to fit short series)
    seed: int = 0  # the random subsamples of NOC and Z

    def check(self) -> None:
        if self.definitions not in DEFINITIONS:
            raise AnalysisError(unknown_key_message("definitions", self.definitions, DEFINITIONS))
        if self.pooling not in POOLINGS:
            raise AnalysisError(unknown_key_message("pooling", self.pooling, POOLINGS))
        if self.state is None:
            self.state = list(PAPER_STATE if self.definitions == "paper" else DEFAULT_STATE)
        for name in self.state:
            if name not in FEATURES:
                raise AnalysisError(unknown_key_message("state feature", name, FEATURES))
        if len(self.state) < 2:
            raise AnalysisError("the state vector needs at least two features")
        for name in self.skip:
            if name not in STATISTICS:
                raise AnalysisError(unknown_key_message("statistic to skip", name, STATISTICS))
        if self.benchmark_points not in ("all", "ends"):
            raise AnalysisError(f"benchmark_points must be all or ends, got {self.benchmark_points!r}")
        if self.max_values < 2 or self.grid < 2:
            raise AnalysisError("max_values and grid must be at least 2")


def _paper5_average(results: dict[str, Any]) -> float | None:
    from growlm.evaluation.tables import PAPER_METRIC
    from growlm.evaluation.tasks import GROUPS

    tasks = GROUPS["paper5"]
    if not all(t in results["results"] for t in tasks):
        return None
    return float(np.mean([100 * results["results"][t][PAPER_METRIC[t]] for t in tasks]))


def _evaluate(run: RunSource, point_folder: Path, out: Path, settings: AnalysisSettings, benchmarks: bool) -> dict[str, Any]:
    """Validation perplexity (``growlm.evaluation.perplexity.evaluate_loss`` on the data's val split,
    first ``ppl_batches`` batches of ``seq_len`` windows) and, when asked, the benchmarks through
    ``growlm eval``'s library call (first ``limit`` documents of each task)."""
    row: dict[str, Any] = {}
    data = Path(settings.ppl_data) if settings.ppl_data else run.data
    if data is not None and (data / "meta.json").exists():
        from growlm.data.dataset import TokenSplit
        from growlm.evaluation.perplexity import evaluate_loss
        from growlm.system import pick_autocast, pick_device

        device = pick_device(settings.device)
        model = storage.load_model(point_folder, device).float().eval()
        seq_len = settings.seq_len or run.seq_len or min(1024, int(model.config.max_position_embeddings))
        result = evaluate_loss(model, TokenSplit(data, "val"), seq_len, settings.batch_size, settings.ppl_batches,
                               device, pick_autocast("auto", device))
        row.update(val_loss=float(result["loss"]), ppl=float(result["perplexity"]))
    if benchmarks and settings.tasks:
        from growlm.evaluation.runner import evaluate_checkpoint

        report = evaluate_checkpoint(point_folder, list(settings.tasks), out=out, data_dir=settings.benchmarks,
                                     limit=settings.limit, batch_size=settings.batch_size, device=settings.device,
                                     progress=False)
        row["paper5"] = _paper5_average(report)
    return row


def weight_statistics(growth: dict[str, Any], growth_folder: str, folders: Sequence[str], max_values: int,
                      grid: int, definitions: str = "growlm", pooling: str = "layer",
                      seed: int = 0) -> list[dict[str, Any]]:
    """NOC and Z of each snapshot folder (plain CPU work, so it can run in a worker process): with
    the paper's definitions between the base model (read back from the growth point) and the
    snapshot; with growlm's between the new and old entries of the snapshot's grown matrices,
    plus theta and rho against the growth point."""
    growth_state = storage.load_state(Path(growth_folder))
    if definitions == "paper":
        base = base_state(growth, growth_state)
        out = []
        for folder in folders:
            state = growth_state if folder == growth_folder else storage.load_state(Path(folder))
            out.append(base_vs_grown(base, arrays(state), growth, pooling, max_values, grid, seed))
        return out
    matrices = grown_matrices(growth, {k: tuple(v.shape) for k, v in growth_state.items()})
    geometry = WeightGeometry(growth_state, matrices)
    out = []
    for folder in folders:
        state = growth_state if folder == growth_folder else storage.load_state(Path(folder))
        new, old = value_sets(state, matrices)
        rank = mann_whitney_z(new, old)
        theta, rho = geometry.theta_rho(state)
        out.append({"noc": overlap_coefficient(new, old, max_values, grid), "z": rank.z, "auc": rank.auc,
                    "u": rank.u, "n_new": rank.n1, "n_old": rank.n2, "theta": theta, "rho": rho})
    return out


def analyse_run(run: RunSource, out: Path, settings: AnalysisSettings,
                pool: Any = None) -> dict[str, Any]:
    """The per-snapshot statistics of one run (growth point first); with ``pool`` (an executor) the
    weight statistics are computed there, one task per snapshot, while this process evaluates."""
    growth_folder = str(run.points[0].folder)
    folders = [str(p.folder) for p in run.points]
    def statistics(snapshots: list[str]) -> list[dict[str, Any]]:
        return weight_statistics(run.growth, growth_folder, snapshots, settings.max_values, settings.grid,
                                 settings.definitions, settings.pooling, settings.seed)

    if pool is not None:
        futures = [pool.submit(weight_statistics, run.growth, growth_folder, [f], settings.max_values, settings.grid,
                               settings.definitions, settings.pooling, settings.seed) for f in folders]
    else:
        futures = None
    evaluations = []
    for i, point in enumerate(run.points):
        benchmarks = settings.benchmark_points == "all" or i in (0, len(run.points) - 1)
        evaluations.append(_evaluate(run, point.folder, out / "eval" / run.label / f"step-{point.step:08d}",
                                     settings, benchmarks))
    weights = [f.result()[0] for f in futures] if futures is not None else statistics(folders)
    if settings.definitions == "growlm":
        matrices = [m.name for m in grown_matrices(run.growth, {k: tuple(v.shape) for k, v in storage.load_state(
            run.points[0].folder).items()})]
    else:
        matrices = sorted(run.growth.get("placements", {}))
    rows = []
    for point, weight, evaluation in zip(run.points, weights, evaluations, strict=True):
        row = {"run": run.label, "step": point.step, "tokens": point.tokens, "snapshot": str(point.folder),
               **weight, **evaluation}
        rows.append(row)
        logger.info(f"{run.label} step {point.step}: NOC {row['noc']:.4f}, Z {row['z']:.4g}"
                    + (f", ppl {row['ppl']:.2f}" if "ppl" in row else ""))
    base = rows[0]
    if settings.definitions == "paper":  # θ, ρ, R against the run's own growth point
        theta, rho, radius = radial_energy([r["z"] for r in rows], [r["noc"] for r in rows])
        for row, t, r, big_r in zip(rows, theta, rho, radius, strict=True):
            row.update(theta=t, rho=r, R=big_r)
    for row in rows:
        if row.get("paper5") is not None and base.get("paper5") is not None:
            row["delta_p"] = row["paper5"] - base["paper5"]
            row["rel_p"] = (row["paper5"] - base["paper5"]) / base["paper5"] if base["paper5"] else None
        if "ppl" in row and "ppl" in base:
            row["delta_lnppl"] = 100 * (math.log(base["ppl"]) - math.log(row["ppl"]))
            row["ln_ppl"] = math.log(row["ppl"])
            row["rel_ppl"] = (base["ppl"] - row["ppl"]) / base["ppl"]
    info = {"label": run.label, "path": str(run.path), "run_dir": str(run.run_dir),
            "architecture": run.architecture, "init": run.init,
            "changes": run.growth.get("changes"), "parameters": run.growth.get("parameters"),
            "grown_matrices": matrices, "notes": run.notes}
    return {"run": info, "rows": rows}


def _performance_measure(rows: list[dict[str, Any]], definitions: str = "growlm") -> str:
    """The state's performance feature: paper definitions ΔAvg/Avg₀ (``rel_p``) when every snapshot
    has benchmarks, else the relative perplexity drop (PPL₀ − PPL)/PPL₀ (``rel_ppl``); growlm
    definitions ΔP in points, else 100·Δln PPL."""
    names = ("rel_p", "rel_ppl") if definitions == "paper" else ("delta_p", "delta_lnppl")
    for name in names:
        if rows and all(r.get(name) is not None for r in rows):
            return name
    return ""


def analyse(paths: Sequence[str | Path], out: str | Path, settings: AnalysisSettings | None = None,
            names: Sequence[str] | None = None) -> dict[str, Any]:
    """Analyse grown runs; writes everything to ``out`` and returns the ``dynamics.json`` content."""
    settings = settings or AnalysisSettings()
    settings.check()
    out = Path(out)
    if names and len(names) != len(paths):
        raise AnalysisError(f"{len(names)} name(s) for {len(paths)} run(s)")
    runs = [resolve_run(p, names[i] if names else None) for i, p in enumerate(paths)]
    seen: dict[str, int] = {}
    for run in runs:  # unique labels
        if run.label in seen:
            seen[run.label] += 1
            run.label = f"{run.label}-{seen[run.label]}"
        else:
            seen[run.label] = 0
    architectures = {r.label: r.architecture for r in runs}
    if len(set(architectures.values())) > 1 and "law" not in settings.skip:
        raise AnalysisError("the law ln PPL = a |ln R| + b is fitted across growth scales of one architecture, "
                            "but these runs mix architectures: "
                            + ", ".join(f"{k} ({v})" for k, v in architectures.items())
                            + "; analyse them separately or pass --skip law")
    for run in runs:  # before any work: every run has the snapshots the statistics need
        hint = (f"run {run.label} has {len(run.points)} points (growth point + snapshots); keep more snapshots "
                "(e.g. `snapshots: 11`) or leave the statistic out with --skip")
        for key, statistic in (("harmonic", "harmonic regression"), ("fisher", "Fisher's g")):
            if key not in settings.skip:  # the growth point (R = 0) is left out of these tests
                need(statistic, len(run.points) - 1, "points after the growth point", hint=hint)
    out.mkdir(parents=True, exist_ok=True)
    if settings.workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: the parent may hold CUDA; the workers only read safetensors and use numpy/scipy
        with ProcessPoolExecutor(settings.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = [analyse_run(run, out, settings, pool) for run in runs]
    else:
        results = [analyse_run(run, out, settings) for run in runs]
    rows = [row for r in results for row in r["rows"]]

    scales: dict[str, float] | None = None
    if settings.definitions == "growlm":
        # normalised features and the radial energy: max-abs scaling over every state of this call
        scales = {}
        for name in ("theta", "rho"):
            peak = max(abs(r[name]) for r in rows)
            scales[name] = peak if peak > 0 else 1.0
        for row in rows:
            row["theta_n"] = row["theta"] / scales["theta"]
            row["rho_n"] = row["rho"] / scales["rho"]
            row["R"] = math.hypot(row["theta_n"], row["rho_n"])

    perf = _performance_measure(rows, settings.definitions)
    for row in rows:
        row["perf"] = row.get(perf) if perf else None
    notes: list[str] = []
    assert settings.state is not None  # check() resolved the default
    state = [f for f in settings.state if f != "perf" or perf]
    if len(state) < len(settings.state):
        notes.append("no performance measure (neither benchmarks nor perplexity evaluated): the state vector "
                     "leaves 'perf' out")

    pca = None
    if "pca" not in settings.skip and len(state) >= 2:
        matrix = np.array([[r[f] for f in state] for r in rows], dtype=np.float64)
        pca = pca_states(matrix, state)
        for row, scores in zip(rows, pca.scores, strict=True):
            row["pc1"], row["pc2"] = scores[0], scores[1] if len(scores) > 1 else 0.0
            row["state"] = [row[f] for f in state]
        for result in results:
            first = result["rows"][0]
            ref_point, ref_plane = (first["pc1"], first["pc2"]), lifted_plane((first["pc1"], first["pc2"]))
            for row in result["rows"]:
                row["grassmann"] = grassmann_distance(ref_plane, lifted_plane((row["pc1"], row["pc2"])))
                row["euclidean"] = math.hypot(row["pc1"] - ref_point[0], row["pc2"] - ref_point[1])

    periodicity = {}
    for result in results:
        label = result["run"]["label"]
        after = result["rows"][1:]  # the growth point has R = 0 by construction: not an observation
        tokens = [r["tokens"] for r in after]
        series = [r["R"] for r in after]
        entry: dict[str, Any] = {}
        if "harmonic" not in settings.skip:
            degree = max(0, min(settings.trend_degree, len(series) - 5))
            if degree < settings.trend_degree:
                notes.append(f"{label}: harmonic regression with a degree-{degree} trend ({len(series)} points "
                             f"after the growth point; degree {settings.trend_degree} needs "
                             f"{settings.trend_degree + 5})")
            entry["harmonic"] = harmonic_regression(tokens, series, trend_degree=degree).as_dict()
        if "fisher" not in settings.skip:
            entry["fisher"] = fisher_g(series).as_dict()
        periodicity[label] = entry

    law: dict[str, Any] | None = None
    if "law" not in settings.skip:
        if not all(r.get("ppl") is not None for r in rows):
            notes.append("law fit left out: no validation perplexity (give --ppl-data or runs with a prepared "
                         "data folder)")
        else:
            law = {}
            inits = {r["run"]["label"]: r["run"]["init"] for r in results}
            for init in dict.fromkeys(inits.values()):  # one law per init scheme, across its growth scales
                members = [label for label, i in inits.items() if i == init]
                if len(members) < 2:
                    notes.append(f"law fit for init {init} left out: it needs runs of at least two growth scales")
                    continue
                points = [r for r in rows if r["run"] in members and r["R"] > 0]
                law[init] = law_fit([abs(math.log(r["R"])) for r in points], [math.log(r["ppl"]) for r in points],
                                    [r["run"] for r in points])
            law = law or None

    bands: dict[str, Any] = {}
    if perf:
        bands["perf"] = radius_bands([r["R"] for r in rows], [r["perf"] for r in rows])
    if all(r.get("ppl") is not None for r in rows):
        bands["ln_ppl"] = radius_bands([r["R"] for r in rows], [math.log(r["ppl"]) for r in rows])

    report: dict[str, Any] = {
        "settings": {**asdict(settings), "state": state, "performance_measure": perf or None,
                     "normalisation": ({"theta_max": scales["theta"], "rho_max": scales["rho"]} if scales
                                       else None)},
        "runs": [{**r["run"], "periodicity": periodicity.get(r["run"]["label"], {})} for r in results],
        "snapshots": rows,
        "pca": asdict(pca) if pca else None,
        "law": law,
        "radius_bands": bands,
        "notes": notes,
    }
    (out / "dynamics.json").write_text(json.dumps(report, indent=2, default=_json_default))
    _write_csv(out / "dynamics.csv", rows)
    from growlm.analysis.figures import write_figures
    from growlm.analysis.tables import write_tables

    report["tables"] = str(write_tables(report, out / "tables.md"))
    report["figures"] = [str(p) for p in write_figures(report, out)]
    return report


CSV_COLUMNS = ("run", "step", "tokens", "noc", "z", "auc", "theta", "rho", "theta_n", "rho_n", "R", "paper5",
               "delta_p", "rel_p", "val_loss", "ppl", "delta_lnppl", "rel_ppl", "perf", "pc1", "pc2", "grassmann", "euclidean",
               "n_new", "n_old", "n_base", "n_grown", "snapshot")


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
