"""Benchmark evaluation end to end: chance level when untrained, series, tables, errors."""

import dataclasses
import gzip
import json
import shutil

import numpy as np
import pytest

from growlm.data.tokenizer import load_tokenizer
from growlm.evaluation.loglikelihood import encode_pair
from growlm.evaluation.runner import evaluate_checkpoint, evaluate_series
from growlm.evaluation.tables import build_tables
from growlm.evaluation.tasks import TASKS, EvalError, load_task_docs, resolve_splits, resolve_tasks
from growlm.models import model_class_for
from growlm.models.presets import build_config
from growlm.models.storage import save_model
from growlm.training.trainer import start_run
from tests.conftest import SP_MODEL, train_config

CHANCE = {"piqa": 0.5, "openbookqa": 0.25, "hellaswag": 0.25, "arc_easy": 0.25, "arc_challenge": 0.25}


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    import torch

    folder = tmp_path_factory.mktemp("untrained") / "nexus-tiny"
    tokenizer = load_tokenizer(SP_MODEL)
    # one narrow layer: an untrained model's near-uniform predictions do not depend on its size, and
    # the full paper5 (2769 documents, ~10k continuations) then scores in a fraction of nexus-tiny's time
    config = build_config("nexus-tiny", {"eos_token_id": 2, "bos_token_id": 1, "num_hidden_layers": 1,
                                         "hidden_size": 32, "intermediate_size": 64, "nexus_m": 32, "nexus_a": 40,
                                         "num_attention_heads": 2, "head_dim": 16})
    torch.manual_seed(0)
    save_model(model_class_for(config)(config), folder, tokenizer)
    return folder


def test_untrained_model_scores_chance_on_the_full_paper5(untrained, shared, tmp_path):
    """acc_norm is at chance within 2.5 standard errors on every task. acc is too for PIQA and HellaSwag; on
    ARC and OBQA an untrained model's near-uniform predictions make acc pick the choice with the fewest
    tokens, so acc follows that dataset property instead (checked here), as it would in lm-eval."""
    report = evaluate_checkpoint(untrained, ["paper5"], out=tmp_path, data_dir=shared / "benchmarks",
                                 device="cpu", progress=False)
    results = report["results"]
    assert {t: results[t]["n"] for t in CHANCE} == {"piqa": 400, "openbookqa": 500, "hellaswag": 1000,
                                                    "arc_easy": 570, "arc_challenge": 299}
    for task, chance in CHANCE.items():
        assert abs(results[task]["acc_norm"] - chance) <= 2.5 * results[task]["acc_norm_stderr"], task
    for task in ("piqa", "hellaswag"):
        assert abs(results[task]["acc"] - CHANCE[task]) <= 2.5 * results[task]["acc_stderr"], task
    tokenizer = load_tokenizer(untrained)
    rows = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    for task in ("openbookqa", "arc_challenge", "arc_easy"):
        fewest = [int(np.argmin([len(encode_pair(tokenizer, r["context"], " " + c)[1]) for c in r["choices"]]))
                  for r in rows if r["task"] == task]
        preds = [r["pred"] for r in rows if r["task"] == task]
        assert np.mean(np.array(fewest) == np.array(preds)) > 0.6, task
    assert report["groups"]["paper5"]["acc_norm"] == pytest.approx(np.mean([results[t]["acc_norm"] for t in CHANCE]))


def test_series_over_checkpoints_and_tables(tiny_data, shared, tmp_path):
    start_run(train_config(tiny_data, tmp_path / "run", max_steps=20, checkpoint_every=10))
    rows = evaluate_series(tmp_path / "run", ["arc_easy", "lambada_openai", "ppl"], data_dir=shared / "benchmarks",
                           ppl_data=tiny_data, limit=8, device="cpu", max_batches=2, progress=False)
    assert [r["step"] for r in rows] == [10, 20] and [r["tokens"] for r in rows] == [1280, 2560]
    series = tmp_path / "run" / "eval-series"
    header = (series / "series.csv").read_text().splitlines()[0].split(",")
    assert {"arc_easy/acc", "lambada_openai/perplexity", "ppl/loss"} <= set(header)
    assert (series / "series.png").stat().st_size > 5000
    text = build_tables([series / "step-00000010", series / "step-00000020"], ["early", "late"])
    assert "| early |" in text and "| late |" in text and "PPL / GFLOPs" in text
    # arc_easy fell back to the shared folder's validation split: marked, and the mark explained
    early = next(line for line in text.splitlines() if line.startswith("| early |"))
    assert early.split(" | ")[5].endswith("†") and "† scored on another split" in text
    with pytest.raises(EvalError, match="2 name"):
        build_tables([series / "step-00000010"], ["a", "b"])


def test_squad_loglikelihood_scores_the_first_gold_answer(untrained, shared, tmp_path):
    """squad_ll: the target is ' ' + the first gold answer; bits_per_byte is the summed NLL over ln 2 and bytes."""
    import gzip
    import math

    report = evaluate_checkpoint(untrained, ["squad_ll"], out=tmp_path, data_dir=shared / "benchmarks", limit=3,
                                 device="cpu", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    with gzip.open(shared / "benchmarks" / "squad" / "validation.jsonl.gz", "rt") as f:
        docs = [json.loads(next(f)) for _ in range(3)]
    assert [r["target"] for r in rows] == [" " + d["answers"]["text"][0] for d in docs]
    assert all(r["context"].endswith(f"Question: {d['question']}\n\nAnswer:") for r, d in zip(rows, docs, strict=True))
    nll = -sum(r["loglikelihood"] for r in rows)
    expected = nll / (math.log(2) * sum(len(r["target"].encode()) for r in rows))
    assert report["results"]["squad_ll"]["bits_per_byte"] == pytest.approx(expected, rel=1e-12)
    assert report["results"]["squad_ll"]["n"] == 3 and expected > 0


def test_squad_generation_runs(untrained, shared, tmp_path):
    report = evaluate_checkpoint(untrained, ["squad"], out=tmp_path, data_dir=shared / "benchmarks", limit=4,
                                 batch_size=4, device="cpu", progress=False)
    assert report["results"]["squad"]["n"] == 4 and 0 <= report["results"]["squad"]["f1"] <= 100
    rows = [json.loads(x) for x in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert all("\n" not in r["prediction"] and r["answers"] for r in rows)


def test_hub_loader_reads_a_dataset_folder(shared, tmp_path, monkeypatch):
    """The code path that reads the hub (datasets.load_dataset) run on a local dataset folder."""
    import shutil

    folder = tmp_path / "piqa"
    folder.mkdir()
    shutil.copy(shared / "benchmarks" / "piqa" / "validation.jsonl.gz", folder / "validation.jsonl.gz")
    spec = TASKS["piqa"]
    monkeypatch.setitem(TASKS, "piqa", dataclasses.replace(spec, hub=(str(folder), None)))
    loaded = load_task_docs(TASKS["piqa"], data_dir=None, limit=5)
    assert len(loaded.docs) == 5 and {"goal", "sol1", "sol2", "label"} <= set(loaded.docs[0])
    assert (loaded.split, loaded.total, loaded.source) == ("validation", 400, f"hub:{folder}/default")


def test_errors_are_named(untrained, tmp_path):
    with pytest.raises(EvalError, match=r"unknown task 'arc'.*valid: .*arc_easy.*paper5"):
        resolve_tasks(["arc"])
    with pytest.raises(EvalError, match=r"benchmark file .*piqa/validation\.jsonl\.gz is missing.*split validation"):
        evaluate_checkpoint(untrained, ["piqa"], data_dir=tmp_path, progress=False)
    with pytest.raises(EvalError, match="task ppl needs --data"):
        evaluate_checkpoint(untrained, ["ppl"], progress=False)
    bare = tmp_path / "bare"
    config = build_config("nexus-tiny")
    save_model(model_class_for(config)(config), bare)
    with pytest.raises(EvalError, match="holds no tokenizer"):
        evaluate_checkpoint(bare, ["piqa"], progress=False)
    mute = tmp_path / "mute"
    tokenizer = load_tokenizer(SP_MODEL)
    tokenizer.eos_token = None
    save_model(model_class_for(config)(config), mute, tokenizer)
    with pytest.raises(EvalError, match="no end-of-sequence or padding token"):
        evaluate_checkpoint(mute, ["squad"], limit=1, progress=False)
    assert resolve_tasks(["paper5", "piqa", "squad"]) == ["piqa", "openbookqa", "hellaswag", "arc_easy",
                                                          "arc_challenge", "squad"]


def _bench_with_test_split(shared, folder):
    """arc_easy with a test file (the validation rows reversed, so the splits' first documents differ) and a
    validation file; openbookqa with its validation file only."""
    (folder / "arc_easy").mkdir(parents=True)
    (folder / "openbookqa").mkdir()
    source = shared / "benchmarks" / "arc_easy" / "validation.jsonl.gz"
    shutil.copy(source, folder / "arc_easy" / "validation.jsonl.gz")
    lines = gzip.decompress(source.read_bytes()).decode().splitlines()[::-1]
    (folder / "arc_easy" / "test.jsonl.gz").write_bytes(gzip.compress(("\n".join(lines[:40]) + "\n").encode()))
    shutil.copy(shared / "benchmarks" / "openbookqa" / "validation.jsonl.gz", folder / "openbookqa")
    return [json.loads(line) for line in lines[:40]]


def test_standard_split_by_default_fallback_and_choice_are_recorded(untrained, shared, tmp_path, caplog):
    """arc_easy reads test (lm-eval's split); openbookqa, whose test file is absent, falls back to validation
    and says so in the output and results.json; --split picks another split."""
    bench = tmp_path / "bench"
    test_rows = _bench_with_test_split(shared, bench)
    caplog.set_level("INFO", logger="growlm")
    report = evaluate_checkpoint(untrained, "arc_easy,openbookqa", out=tmp_path / "a", data_dir=bench, limit=3,
                                 batch_size=4, device="cpu", progress=False)
    said = caplog.messages
    arc, obqa = report["results"]["arc_easy"], report["results"]["openbookqa"]
    assert {k: arc[k] for k in ("split", "standard_split", "documents_in_split", "documents", "n")} == \
        {"split": "test", "standard_split": True, "documents_in_split": 40, "documents": 3, "n": 3}
    assert "split_note" not in arc and arc["source"] == str(bench / "arc_easy" / "test.jsonl.gz")
    assert (obqa["split"], obqa["standard_split"], obqa["documents_in_split"]) == ("validation", False, 500)
    assert "standard test split is not in" in obqa["split_note"] and "--split validation" in obqa["split_note"]
    assert report["splits"] == {"arc_easy": "test", "openbookqa": "validation"}
    assert report["split_notes"] == [obqa["split_note"]]
    assert any(line.startswith("arc_easy: test split, 3 of 40 documents") for line in said)
    assert f"note: {obqa['split_note']}" in said
    assert obqa["split_note"] in (tmp_path / "a" / "results.md").read_text()
    first = json.loads((tmp_path / "a" / "samples.jsonl").read_text().splitlines()[0])
    assert first["context"] == f"Question: {test_rows[0]['question']}\nAnswer:"

    chosen = evaluate_checkpoint(untrained, ["arc_easy"], out=tmp_path / "b", data_dir=bench, limit=2,
                                 device="cpu", progress=False, split="arc_easy=validation")
    arc = chosen["results"]["arc_easy"]
    assert (arc["split"], arc["documents_in_split"], chosen["settings"]["split"]) == \
        ("validation", 570, {"arc_easy": "validation"})
    assert "as asked (--split)" in arc["split_note"]
    with pytest.raises(EvalError, match=r"arc_easy/train\.jsonl\.gz is missing"):
        evaluate_checkpoint(untrained, ["arc_easy"], data_dir=bench, progress=False, split="train")


def test_task_and_split_lists():
    assert resolve_tasks("arc_easy,piqa") == ["arc_easy", "piqa"]
    assert resolve_tasks(["arc_easy,piqa", "paper5"]) == ["arc_easy", "piqa", "openbookqa", "hellaswag",
                                                         "arc_challenge"]
    assert resolve_splits(["validation"], ["arc_easy", "piqa"]) == {"arc_easy": "validation", "piqa": "validation"}
    assert resolve_splits("arc_easy=validation,piqa=train", ["arc_easy", "piqa"]) == \
        {"arc_easy": "validation", "piqa": "train"}
    with pytest.raises(EvalError, match=r"lambada_openai has no split 'validation'.*test.*TASK=SPLIT"):
        resolve_splits("validation", ["arc_easy", "lambada_openai"])
    with pytest.raises(EvalError, match=r"piqa has no split 'test'.*validation, train"):
        resolve_splits(["piqa=test"], ["piqa"])
    with pytest.raises(EvalError, match=r"unknown task 'arc'"):
        resolve_splits(["arc=test"], ["arc_easy"])
    with pytest.raises(EvalError, match=r"not among the tasks evaluated"):
        resolve_splits(["piqa=validation"], ["arc_easy"])


def test_cli_takes_comma_separated_tasks_and_names_the_split(untrained, shared, tmp_path, capsys):
    from growlm.cli.main import main

    code = main(["eval", str(untrained), "--tasks", "arc_easy,piqa", "--data-dir", str(shared / "benchmarks"),
                 "--limit", "2", "--batch-size", "2", "--device", "cpu", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads((tmp_path / "results.json").read_text())
    assert list(report["results"]) == ["arc_easy", "piqa"] and report["splits"] == {"arc_easy": "validation",
                                                                                      "piqa": "validation"}
    # the shared folder keeps ARC's test split back: the fallback is said on stderr and marked on stdout
    assert "arc_easy: the standard test split is not in" in captured.err
    assert "arc_easy         [validation] acc" in captured.out and "piqa             [validation] acc" in captured.out
    assert main(["eval", str(untrained), "--tasks", "piqa", "--split", "test"]) == 2
    assert "piqa has no split 'test'" in capsys.readouterr().err


def test_standard_splits_are_lm_evals():
    """Each task's standard split is the one lm-eval's own task YAML scores (test_split, else validation_split)."""
    import re
    from pathlib import Path

    lm_eval = pytest.importorskip("lm_eval")
    folder = Path(lm_eval.__file__).parent / "tasks"

    def fields(path: Path) -> dict[str, str]:
        text = path.read_text()
        include = re.search(r"^include: (\S+)", text, re.M)
        out = fields(path.parent / include.group(1)) if include else {}
        return {**out, **dict(re.findall(r"^(\w+): (.*)$", text, re.M))}

    yamls = {"arc_easy": "arc/arc_easy.yaml", "arc_challenge": "arc/arc_challenge.yaml",
             "openbookqa": "openbookqa/openbookqa.yaml", "piqa": "piqa/piqa.yaml",
             "hellaswag": "hellaswag/hellaswag.yaml", "lambada_openai": "lambada/lambada_openai.yaml"}
    for task, name in yamls.items():
        config = fields(folder / name)
        test = config.get("test_split", "null").strip()
        assert TASKS[task].split == (test if test != "null" else config["validation_split"].strip()), task
        assert TASKS[task].splits[0] == TASKS[task].split
