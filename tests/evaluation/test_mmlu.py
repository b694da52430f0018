"""mmlu from local files in lm-eval's schema, and letter-generation scoring of multiple-choice tasks.

The MMLU files are written here (no MMLU data is shared, nothing is downloaded): made-up
questions in the cais/mmlu schema (question, subject, choices, answer)."""

import gzip
import json

import pyarrow
import pyarrow.parquet
import pytest

from growlm.data.tokenizer import load_tokenizer
from growlm.evaluation import runner
from growlm.evaluation.letters import lettered_prompt, parse_letter
from growlm.evaluation.loglikelihood import LoglikelihoodScorer
from growlm.evaluation.mmlu import aggregate
from growlm.evaluation.runner import evaluate_checkpoint
from growlm.evaluation.tasks import TASKS, EvalError, build_examples, load_task_docs, resolve_task_data
from growlm.models import model_class_for
from growlm.models.presets import build_config
from growlm.models.storage import save_model
from tests.conftest import SP_MODEL

SUBJECTS = ("abstract_algebra", "anatomy", "philosophy")  # stem, stem, humanities


def mmlu_rows(per_subject: int = 2, subjects=SUBJECTS) -> list[dict]:
    return [{"question": f"  Which {subject} option is number {i}? ", "subject": subject,
             "choices": [f"one {i}", "two", "three ", " four"], "answer": (i + len(subject)) % 4}
            for subject in subjects for i in range(per_subject)]


def write_jsonl(path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    import torch

    folder = tmp_path_factory.mktemp("untrained") / "nexus-tiny"
    config = build_config("nexus-tiny", {"eos_token_id": 2, "bos_token_id": 1})
    torch.manual_seed(0)
    save_model(model_class_for(config)(config), folder, load_tokenizer(SP_MODEL))
    return folder


@pytest.fixture
def mmlu_dir(tmp_path):
    folder = tmp_path / "mmlu"
    write_jsonl(folder / "test.jsonl", mmlu_rows(2))
    write_jsonl(folder / "dev.jsonl", mmlu_rows(3))
    return folder


# lm-eval's mmlu template (lm_eval/tasks/mmlu/default: description + doc_to_text, target delimiter " ",
# choices A-D; few-shot examples end with " LETTER" and a blank line), written out by hand for one document
EXPECTED_ZERO_SHOT = ("The following are multiple choice questions (with answers) about abstract algebra.\n\n"
                      "Which abstract_algebra option is number 1?\nA. one 1\nB. two\nC. three \nD.  four\nAnswer:")
EXPECTED_ONE_SHOT = ("The following are multiple choice questions (with answers) about abstract algebra.\n\n"
                     "Which abstract_algebra option is number 0?\nA. one 0\nB. two\nC. three \nD.  four\nAnswer: A\n\n"
                     "Which abstract_algebra option is number 1?\nA. one 1\nB. two\nC. three \nD.  four\nAnswer:")


def test_prompt_and_targets_are_lm_evals_mmlu(untrained, mmlu_dir, tmp_path, monkeypatch):
    """The log-likelihood variant asks lm-eval's exact (context, continuation) pairs: ' A' ... ' D'."""
    docs = mmlu_rows(2)
    zero = build_examples("mmlu", docs[1:2])[0]
    assert (zero.context, zero.choices, zero.gold, zero.subject) == (EXPECTED_ZERO_SHOT, ("A", "B", "C", "D"),
                                                                     (1 + 16) % 4, "abstract_algebra")
    # dev's first document of the subject is answer (0 + 16) % 4 = 0: "A"
    assert build_examples("mmlu", docs[1:2], mmlu_rows(3), num_fewshot=1)[0].context == EXPECTED_ONE_SHOT

    asked = []
    original = LoglikelihoodScorer.score

    def recording(self, groups, *args, **kwargs):
        asked.extend(groups)
        return original(self, groups, *args, **kwargs)

    monkeypatch.setattr(LoglikelihoodScorer, "score", recording)
    report = evaluate_checkpoint(untrained, ["mmlu"], out=tmp_path / "out", task_data={"mmlu": mmlu_dir},
                                 num_fewshot=1, device="cpu", progress=False)
    assert asked[1] == (EXPECTED_ONE_SHOT, [" A", " B", " C", " D"])
    assert len(asked) == 6 and all(ctx.endswith("\nAnswer:") for ctx, _ in asked)
    result = report["results"]["mmlu"]
    assert (result["scoring"], result["num_fewshot"], result["split"], result["n"]) == ("loglikelihood", 1, "test", 6)
    assert "acc_norm" not in result  # letters are one character each: lm-eval's mmlu reports acc only
    rows = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    assert [r["subject"] for r in rows] == [s for s in SUBJECTS for _ in range(2)]
    assert result["acc"] == pytest.approx(sum(r["acc"] for r in rows) / 6)
    assert set(result["subjects"]) == set(SUBJECTS)
    assert set(result["categories"]) == {"stem", "humanities"} and result["categories"]["stem"]["n"] == 4


def test_micro_and_macro_aggregates():
    """acc is over questions (lm-eval's weight_by_size), acc_macro over subjects; per category likewise."""
    subjects = ["anatomy"] * 4 + ["astronomy"] * 1 + ["philosophy"] * 5
    correct = [1, 1, 1, 1, 0, 1, 0, 0, 0, 0]  # anatomy 4/4, astronomy 0/1, philosophy 1/5
    out = aggregate(subjects, correct)
    assert out["subjects"]["anatomy"] == {"acc": 1.0, "n": 4, "category": "stem"}
    assert out["categories"]["stem"] == {"acc": 0.8, "acc_macro": 0.5, "subjects": 2, "n": 5}
    assert out["categories"]["humanities"]["acc"] == pytest.approx(0.2)
    assert out["acc_macro"] == pytest.approx((1.0 + 0.0 + 0.2) / 3)
    assert aggregate(["made_up"], [1.0])["categories"] == {"unknown": {"acc": 1.0, "acc_macro": 1.0,
                                                                       "subjects": 1, "n": 1}}


@pytest.mark.parametrize(("text", "count", "expected"), [
    (" A", 4, 0), ("B", 4, 1), (" C.", 4, 2), ("\n\n D) because", 4, 3), (" B is right", 4, 1), ("A:", 4, 0),
    ("\tC\n", 4, 2),
    (" All of the above", 4, None),  # a word that starts with A is not the letter A
    (" a", 4, None),  # lower case: the article, not an answer
    ("(A)", 4, None), (" E", 4, None), (" C", 2, None),  # not one of this question's letters
    ("", 4, None), ("   ", 4, None), (" 1", 4, None), (" Answer: A", 4, None), (" AB", 4, None), (" A1", 4, None),
])
def test_letter_parsing_rule(text, count, expected):
    assert parse_letter(text, count) == expected


def test_lettered_prompt_for_tasks_that_do_not_list_their_choices():
    assert lettered_prompt("Question: Why?\nAnswer:", ["because", "no"]) == \
        "Question: Why?\nA. because\nB. no\nAnswer:"
    assert lettered_prompt("The sun is", ["hot", "cold", "wet"]) == "The sun is\nA. hot\nB. cold\nC. wet\nAnswer:"


def test_generation_scoring_counts_unparsed_answers_as_wrong(untrained, mmlu_dir, tmp_path, monkeypatch):
    """Canned generations: parsed letters are scored, unparsed ones are wrong and counted, and a model that never
    gives a valid letter scores 0, below the 25% of chance (which log-likelihood scoring can never do)."""
    golds = [r["answer"] for r in mmlu_rows(2)]
    assert golds == [0, 1, 3, 0, 2, 3]
    canned = [" A", " C", " D.", "The answer", " E", " D) four"]  # right, wrong, right, unparsed x2, right
    prompts_seen = []

    def fake_generate(model, tokenizer, prompts, *args, **kwargs):
        prompts_seen.extend(prompts)
        assert kwargs["cut"] is str  # the raw text: the rule itself skips leading whitespace
        return [canned[len(prompts_seen) - len(prompts) + i] for i in range(len(prompts))]

    monkeypatch.setattr(runner, "generate_answers", fake_generate)
    report = evaluate_checkpoint(untrained, ["mmlu"], out=tmp_path / "a", task_data={"mmlu": mmlu_dir},
                                 scoring="generate", device="cpu", progress=False)
    result = report["results"]["mmlu"]
    assert prompts_seen == [e.context for e in build_examples("mmlu", mmlu_rows(2))]  # lm-eval's mmlu prompt
    assert (result["acc"], result["unparsed"], result["chance"]) == (pytest.approx(3 / 6), pytest.approx(2 / 6), 0.25)
    assert result["answer_counts"] == {"A": 1, "C": 1, "D": 2, "unparsed": 2}
    assert result["subjects"]["philosophy"]["acc"] == 0.5 and result["scoring"] == "generate"
    assert report["settings"]["scoring"] == "generate"
    rows = [json.loads(line) for line in (tmp_path / "a" / "samples.jsonl").read_text().splitlines()]
    assert [r["pred_letter"] for r in rows] == ["A", "C", "D", None, None, "D"]
    assert [r["generated"] for r in rows] == canned

    canned[:] = [" The"] * 6
    prompts_seen.clear()
    below = evaluate_checkpoint(untrained, ["mmlu"], out=tmp_path / "b", task_data={"mmlu": mmlu_dir},
                                scoring="generate", device="cpu", progress=False)
    assert below["results"]["mmlu"]["acc"] == 0.0 < below["results"]["mmlu"]["chance"]
    assert below["results"]["mmlu"]["unparsed"] == 1.0


def test_generation_scoring_end_to_end_on_other_tasks(untrained, shared, tmp_path):
    """A real (untrained) model generates; ARC gets growlm's lettered prompt; acc never exceeds the parsed share."""
    report = evaluate_checkpoint(untrained, ["arc_easy"], out=tmp_path, data_dir=shared / "benchmarks", limit=3,
                                 batch_size=3, scoring="generate", device="cpu", progress=False)
    result = report["results"]["arc_easy"]
    assert result["acc"] <= 1 - result["unparsed"] and sum(result["answer_counts"].values()) == 3
    assert "acc_norm" not in result and report["groups"] == {}
    row = json.loads((tmp_path / "samples.jsonl").read_text().splitlines()[0])
    assert row["context"].startswith("Question: ") and "\nA. " in row["context"] and row["context"].endswith(
        "\nAnswer:")
    assert isinstance(row["generated"], str) and row["pred"] == parse_letter(row["generated"], len(row["choices"]))


def test_local_forms_parquet_and_hub_layout(tmp_path):
    """test.jsonl, test.jsonl.gz, test.parquet and a hub snapshot's all/test-*.parquet shards all read the same."""
    rows = mmlu_rows(2)
    table = pyarrow.Table.from_pylist(rows)
    forms = {"jsonl": "test.jsonl", "gz": "test.jsonl.gz", "parquet": "test.parquet"}
    for name, file in forms.items():
        path = tmp_path / name / "mmlu" / file
        if name == "parquet":
            path.parent.mkdir(parents=True)
            pyarrow.parquet.write_table(table, path)
        else:
            write_jsonl(path, rows)
        loaded = load_task_docs(TASKS["mmlu"], tmp_path / name, explicit=True)
        assert (loaded.docs, loaded.split, loaded.source) == (rows, "test", str(path)), name
    snapshot = tmp_path / "cais-mmlu"
    (snapshot / "all").mkdir(parents=True)
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows[:4]), snapshot / "all" / "test-00000-of-00002.parquet")
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows[4:]), snapshot / "all" / "test-00001-of-00002.parquet")
    loaded = load_task_docs(TASKS["mmlu"], None, task_data=snapshot)
    assert loaded.docs == rows and loaded.total == 6
    one_file = load_task_docs(TASKS["mmlu"], None, limit=2, task_data=tmp_path / "gz" / "mmlu" / "test.jsonl.gz")
    assert (one_file.docs, one_file.total, one_file.split) == (rows[:2], 6, "test")
    # no test split: validation is scored instead and said; the dev split (few-shot pool) is never a fallback
    write_jsonl(tmp_path / "val" / "mmlu" / "validation.jsonl", rows[:3])
    write_jsonl(tmp_path / "val" / "mmlu" / "dev.jsonl", rows)
    fallback = load_task_docs(TASKS["mmlu"], tmp_path / "val", explicit=True)
    assert fallback.split == "validation" and "standard test split is not in" in fallback.note
    (tmp_path / "val" / "mmlu" / "validation.jsonl").unlink()
    with pytest.raises(EvalError, match=r"mmlu/test\.jsonl\.gz is missing .*test\.parquet.*cais/mmlu"):
        load_task_docs(TASKS["mmlu"], tmp_path / "val", explicit=True)


def test_errors_name_the_problem(untrained, mmlu_dir, tmp_path):
    bad = dict(mmlu_rows(1)[0])
    del bad["subject"]
    with pytest.raises(EvalError, match="mmlu document lacks subject: the cais/mmlu schema has question, subject"):
        build_examples("mmlu", [bad])
    with pytest.raises(EvalError, match="has 3 choices; MMLU has exactly 4"):
        build_examples("mmlu", [{**mmlu_rows(1)[0], "choices": ["a", "b", "c"]}])
    with pytest.raises(EvalError, match="answer 7; it must be an index 0-3"):
        build_examples("mmlu", [{**mmlu_rows(1)[0], "answer": 7}])
    with pytest.raises(EvalError, match=r"--num-fewshot 4: the few-shot split holds 3 document\(s\) of subject"):
        build_examples("mmlu", mmlu_rows(1), mmlu_rows(3), num_fewshot=4)
    with pytest.raises(EvalError, match="few-shot prompts are supported for mmlu only, not arc_easy"):
        evaluate_checkpoint(untrained, ["arc_easy"], num_fewshot=1, progress=False)
    with pytest.raises(EvalError, match=r"is one file: give a folder holding test\.\* and dev\.\*"):
        evaluate_checkpoint(untrained, ["mmlu"], num_fewshot=1, task_data=[f"mmlu={mmlu_dir / 'test.jsonl'}"],
                            progress=False)
    with pytest.raises(EvalError, match=r"unknown scoring 'letters'.*valid: generate, loglikelihood"):
        evaluate_checkpoint(untrained, ["mmlu"], scoring="letters", progress=False)
    with pytest.raises(EvalError, match=r"unknown task 'mmlu_stem'.*\(in --task-data mmlu_stem=x\)"):
        resolve_task_data(["mmlu_stem=x"], ["mmlu"])
    with pytest.raises(EvalError, match="not among the tasks evaluated"):
        resolve_task_data(["mmlu=x"], ["arc_easy"])
    with pytest.raises(EvalError, match="give TASK=PATH"):
        resolve_task_data(["mmlu"], ["mmlu"])
    with pytest.raises(EvalError, match=r"--task-data mmlu=.*nowhere: no such file or folder"):
        evaluate_checkpoint(untrained, ["mmlu"], task_data={"mmlu": tmp_path / "nowhere"}, progress=False)


def test_cli_scoring_fewshot_and_task_data(untrained, mmlu_dir, tmp_path, capsys):
    from growlm.cli.main import main

    code = main(["eval", str(untrained), "--tasks", "mmlu", "--task-data", f"mmlu={mmlu_dir}", "--num-fewshot", "2",
                 "--scoring", "generate", "--device", "cpu", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "mmlu             [test] acc " in captured.out and "unparsed " in captured.out
    assert "  stem           acc " in captured.out and "(2 subjects, 4 questions)" in captured.out
    report = json.loads((tmp_path / "results.json").read_text())
    assert (report["settings"]["scoring"], report["settings"]["num_fewshot"]) == ("generate", 2)
    assert report["settings"]["task_data"] == {"mmlu": str(mmlu_dir)}
    first = json.loads((tmp_path / "samples.jsonl").read_text().splitlines()[0])
    assert first["context"].count("\nAnswer:") == 3  # two solved dev questions, then the question
    assert "| mmlu/stem | test |" in (tmp_path / "results.md").read_text()
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(untrained), "--tasks", "mmlu", "--scoring", "letters"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'letters'" in capsys.readouterr().err
