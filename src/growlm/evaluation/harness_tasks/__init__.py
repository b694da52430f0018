"""lm-evaluation-harness task definitions for the papers' benchmarks on local files.

Pass this folder to lm-eval as ``--include_path`` (``growlm harness`` does it). Tasks:
``growlm_piqa``, ``growlm_openbookqa``, ``growlm_hellaswag``, ``growlm_arc_easy``,
``growlm_arc_challenge``, ``growlm_lambada_openai`` and the group ``growlm_paper5``. Their
prompts are the harness's default ones; their documents come from the local copies
(``--metadata '{"data_dir": "..."}'``, ``$GROWLM_BENCHMARKS`` or ``../shared/benchmarks``)
through growlm's own loader, so growlm and the harness score the same documents.
"""
