"""Growth dynamics: what the new parameters of a grown model do during continued training.

``growlm analyze RUN [RUN ...] --out DIR`` (:func:`analyse`) reads a grown run's growth record and
snapshots and computes the Nexusformer paper's statistics (§5, appendices C, D, F): NOC, the
Mann-Whitney Z, θ, ρ, ΔP, the radial energy R, PCA, Grassmann distances, harmonic regression,
Fisher's g and the law ln PPL = a |ln R| + b. ``statistics.py`` holds the recipes on plain
arrays, ``regions.py`` the old/new entries and θ, ρ, ``runs.py`` finds what to analyse,
``dynamics.py`` runs it, ``tables.py`` and ``figures.py`` write it out.
"""

from growlm.analysis.dynamics import AnalysisSettings, analyse
from growlm.analysis.statistics import AnalysisError

__all__ = ["AnalysisError", "AnalysisSettings", "analyse"]
