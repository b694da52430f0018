"""growlm's benchmark scores equal lm-evaluation-harness's on the same model and documents.

A nexus-tiny trained for a few steps is scored by growlm and by lm-eval (its ``hf``
model type after ``import growlm``, and the registered ``growlm`` type) on the shipped
``growlm_*`` task definitions, which read the same local files. Both run in float64 so
that any difference in prompts, tokenization or truncation would show far above the
arithmetic noise: per-example log-likelihoods agree to 1e-4 (in practice ~1e-14), and
acc, acc_norm and LAMBADA's perplexity are identical.

lm-eval's own ``arc_easy`` task (its YAML untouched but for the dataset's location) scores
ARC-Easy's test split; growlm does too by default, and the scores are identical.
"""

import json
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")

from growlm.evaluation.harness import TASK_DIR, register
from growlm.evaluation.runner import evaluate_checkpoint
from growlm.models import storage
from growlm.training.trainer import start_run
from tests.conftest import train_config

TASKS = ["piqa", "openbookqa", "hellaswag", "arc_easy", "arc_challenge", "lambada_openai"]
LIMIT = 24


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("parity") / "run"
    start_run(train_config(tiny_data, out, max_steps=30, checkpoint_every=30, eval_every=30))
    return storage.list_checkpoints(out)[-1]


@pytest.mark.parametrize("model_type", ["hf", "growlm"])
def test_same_loglikelihoods_and_scores_as_lm_eval(trained, shared, tmp_path, model_type):
    import lm_eval
    from lm_eval.tasks import TaskManager

    register()
    ours = evaluate_checkpoint(trained, TASKS, out=tmp_path, data_dir=shared / "benchmarks", limit=LIMIT,
                               batch_size=8, device="cpu", dtype="float64", progress=False)
    samples = {}
    for line in (tmp_path / "samples.jsonl").read_text().splitlines():
        row = json.loads(line)
        samples[(row["task"], row["doc_id"])] = row
    theirs = lm_eval.simple_evaluate(
        model=model_type, model_args={"pretrained": str(trained), "dtype": "float64"},
        tasks=[f"growlm_{t}" for t in TASKS], limit=LIMIT, log_samples=True, batch_size=8, device="cpu",
        task_manager=TaskManager(include_path=str(TASK_DIR), metadata={"data_dir": str(shared / "benchmarks")}))
    for task in TASKS:
        harness_samples = theirs["samples"][f"growlm_{task}"]
        assert len(harness_samples) == LIMIT
        for sample in harness_samples:
            mine = samples[(task, sample["doc_id"])]
            lls = [resp[0] for resp in sample["filtered_resps"]]
            expected = mine["loglikelihoods"] if task != "lambada_openai" else [mine["loglikelihood"]]
            assert len(lls) == len(expected)
            assert max(abs(a - b) for a, b in zip(lls, expected, strict=True)) <= 1e-4, (task, sample["doc_id"])
            if task != "lambada_openai":
                assert (sample["acc"], sample["acc_norm"]) == (mine["acc"], mine["acc_norm"]), task
            else:
                assert sample["acc"] == float(mine["is_greedy"])
        harness = theirs["results"][f"growlm_{task}"]
        assert harness["acc,none"] == ours["results"][task]["acc"]
        if task == "lambada_openai":
            assert harness["perplexity,none"] == pytest.approx(ours["results"][task]["perplexity"], rel=1e-9)
        else:
            assert harness["acc_norm,none"] == ours["results"][task]["acc_norm"]


def test_growlm_harness_command(trained, shared):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "growlm.cli.main", "harness", "--model", "growlm", "--model_args",
                             f"pretrained={trained},dtype=float32", "--tasks", "growlm_piqa", "--limit", "4",
                             "--device", "cpu", "--batch_size", "4", "--metadata",
                             json.dumps({"data_dir": str(shared / "benchmarks")})],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "growlm_piqa" in result.stdout and "acc_norm" in result.stdout


def _arc_easy_folder(shared, folder):
    """A benchmarks folder holding ARC-Easy's test split (and others), also readable by ``datasets``.

    The test file holds ARC-Easy rows in a different order from the validation file (the shared
    folder keeps the real test split back), so scoring the wrong split would show: the first
    documents differ. README.md declares both splits as the hub's config ``ARC-Easy`` does,
    so lm-eval's ``arc_easy`` loads the same files with ``datasets.load_dataset``."""
    import gzip
    import shutil

    rows = (shared / "benchmarks" / "arc_easy" / "validation.jsonl.gz").read_bytes()
    (folder / "arc_easy").mkdir(parents=True)
    for split in ("validation", "train"):  # lm-eval's task wants a train split (its few-shot pool; 0-shot here)
        shutil.copy(shared / "benchmarks" / "arc_easy" / "validation.jsonl.gz", folder / "arc_easy" / f"{split}.jsonl.gz")
    lines = gzip.decompress(rows).decode().splitlines()
    (folder / "arc_easy" / "test.jsonl.gz").write_bytes(gzip.compress(("\n".join(lines[::-1]) + "\n").encode()))
    (folder / "README.md").write_text("---\nconfigs:\n- config_name: ARC-Easy\n  data_files:\n"
                                      "  - split: test\n    path: arc_easy/test.jsonl.gz\n"
                                      "  - split: validation\n    path: arc_easy/validation.jsonl.gz\n"
                                      "  - split: train\n    path: arc_easy/train.jsonl.gz\n---\n")
    return [json.loads(line) for line in lines[::-1]]


def test_arc_easy_test_split_equals_lm_eval_arc_easy(trained, shared, tmp_path, monkeypatch):
    import lm_eval
    from lm_eval.tasks import TaskManager

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    bench = tmp_path / "bench"
    test_rows = _arc_easy_folder(shared, bench)
    ours = evaluate_checkpoint(trained, ["arc_easy"], out=tmp_path / "ours", data_dir=bench, limit=LIMIT,
                               batch_size=8, device="cpu", dtype="float64", progress=False)
    result = ours["results"]["arc_easy"]
    assert (result["split"], result["standard_split"], result["documents_in_split"], result["n"]) == \
        ("test", True, 570, LIMIT)
    assert ours["splits"] == {"arc_easy": "test"} and not ours["split_notes"]
    samples = [json.loads(line) for line in (tmp_path / "ours" / "samples.jsonl").read_text().splitlines()]
    assert samples[0]["context"] == f"Question: {test_rows[0]['question']}\nAnswer:"  # the test file's first row
    # lm-eval's own arc_easy definition, included as it is, with only the dataset's location changed
    arc_easy_yaml = Path(lm_eval.__file__).parent / "tasks" / "arc" / "arc_easy.yaml"
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "arc_easy_here.yaml").write_text(
        f"include: {arc_easy_yaml}\ntask: arc_easy_here\ndataset_path: {bench}\n"
        f"dataset_kwargs:\n  cache_dir: {tmp_path / 'hf-cache'}\n")
    theirs = lm_eval.simple_evaluate(
        model="hf", model_args={"pretrained": str(trained), "dtype": "float64"}, tasks=["arc_easy_here"],
        limit=LIMIT, log_samples=True, batch_size=8, device="cpu",
        task_manager=TaskManager(include_path=str(tmp_path / "tasks")))
    config = theirs["configs"]["arc_easy_here"]
    assert (config["test_split"], config["dataset_name"]) == ("test", "ARC-Easy")
    harness = theirs["results"]["arc_easy_here"]
    assert (harness["acc,none"], harness["acc_norm,none"]) == (result["acc"], result["acc_norm"])
    for sample in theirs["samples"]["arc_easy_here"]:
        assert sample["doc"]["id"] == test_rows[sample["doc_id"]]["id"]
        mine = samples[sample["doc_id"]]
        assert (sample["acc"], sample["acc_norm"]) == (mine["acc"], mine["acc_norm"])


def test_harness_loader_reads_the_standard_split_or_the_one_asked(shared, tmp_path):
    from growlm.evaluation.harness_tasks import utils

    bench = tmp_path / "bench"
    test_rows = _arc_easy_folder(shared, bench)
    loaded = utils.load_arc_easy(data_dir=str(bench))
    assert list(loaded) == ["test"] and loaded["test"][0]["id"] == test_rows[0]["id"]  # the YAML's test_split
    asked = utils.load_arc_easy(data_dir=str(bench), split="validation")
    assert asked["test"][0]["id"] != test_rows[0]["id"] and len(asked["test"]) == 570
    with pytest.warns(UserWarning, match="standard test split is not in"):
        fallback = utils.load_openbookqa(data_dir=str(shared / "benchmarks"))
    assert list(fallback) == ["test"] and len(fallback["test"]) == 500


def test_mmlu_prompts_equal_lm_evals_own_mmlu_tasks(tmp_path, monkeypatch):
    """lm-eval's own mmlu_abstract_algebra (log-likelihood) and its generative twin, their YAMLs included
    unchanged but for the dataset's location (a local folder in the cais/mmlu schema written here): growlm's
    mmlu asks the same (context, continuation) pairs, zero- and two-shot, and its generation prompt is the
    generative task's context."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    from growlm.evaluation.tasks import build_examples

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    bench = tmp_path / "cais-mmlu"
    (bench / "abstract_algebra").mkdir(parents=True)
    rows = [{"question": f" What is {i} + {i}? ", "subject": "abstract_algebra",
             "choices": [str(2 * i), "x ", " y", "z"], "answer": i % 4} for i in range(6)]
    for split in ("test", "dev"):
        (bench / "abstract_algebra" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (bench / "README.md").write_text("---\nconfigs:\n- config_name: abstract_algebra\n  data_files:\n"
                                     "  - split: test\n    path: abstract_algebra/test.jsonl\n"
                                     "  - split: dev\n    path: abstract_algebra/dev.jsonl\n---\n")
    mmlu = Path(lm_eval.__file__).parent / "tasks" / "mmlu"
    (tmp_path / "tasks").mkdir()
    for name, variant in (("mmlu_here", "default"), ("mmlu_generative_here", "generative")):
        (tmp_path / "tasks" / f"{name}.yaml").write_text(
            f"include: {mmlu / variant / 'mmlu_abstract_algebra.yaml'}\ntask: {name}\ndataset_path: {bench}\n"
            f"dataset_kwargs:\n  cache_dir: {tmp_path / 'hf-cache'}\n")
    loaded = TaskManager(include_path=str(tmp_path / "tasks")).load(["mmlu_here", "mmlu_generative_here"])["tasks"]
    task, generative = loaded["mmlu_here"], loaded["mmlu_generative_here"]
    docs = list(task.test_docs())
    assert docs == rows
    for shots in (0, 2):
        ours = build_examples("mmlu", rows, rows, num_fewshot=shots)
        for doc, example in zip(docs, ours, strict=True):
            context = task.fewshot_context(doc, num_fewshot=shots)
            requests = task.construct_requests(doc, context)
            assert [r.arguments for r in requests] == [(example.context, " " + c) for c in example.choices]
            assert example.gold == task.doc_to_target(doc)
            assert generative.fewshot_context(doc, num_fewshot=shots) == example.context
            assert generative.doc_to_target(doc) == "ABCD"[example.gold]
