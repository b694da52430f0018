"""Help text true to behaviour: choices come from the registries, defaults are shown, a mistyped
flag is answered by its subcommand with a suggestion, and --version."""

from __future__ import annotations

import re

import pytest

import growlm
from growlm.cli.main import main
from growlm.evaluation.tasks import GROUPS, TASKS
from growlm.growth.schemes import INIT_SCHEMES
from tests.conftest import make_model, small_config


def _help(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as done:
        main([*args, "--help"])
    assert done.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines: compare words


def _error(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    assert done.value.code == 2
    return capsys.readouterr().err


def test_top_level_help_is_for_users(capsys):
    text = _help(capsys)
    assert "``" not in text and ":class:" not in text and "--version" in text and "info" in text


def test_grow_lists_every_init_scheme(capsys):
    text = _help(capsys, "grow")
    assert "fresh" in INIT_SCHEMES
    for name in INIT_SCHEMES:
        assert f"{name}:" in text, name


def test_eval_lists_every_task_and_group(capsys):
    text = _help(capsys, "eval")
    assert "squad_ll" in TASKS
    for name in [*TASKS, *GROUPS]:
        assert re.search(rf"\b{name}\b", text), name
    assert "trained at" in text  # --seq-len names the default eval really uses


def test_generate_shows_its_defaults(capsys):
    text = _help(capsys, "generate")
    assert "tokens to generate (default: 50)" in text and "(default: 0.0)" in text
    assert "sampling seed (default: 0)" in text  # a default of 0 is shown too
    assert "(default: None)" not in text  # required --prompt has none to show


def test_a_mistyped_flag_gets_the_subcommands_usage_and_a_suggestion(capsys):
    err = _error(capsys, "grow", "model", "--out", "x", "--sed", "3")
    assert err.startswith("usage: growlm grow ")
    assert "growlm grow: error: unrecognized arguments: --sed 3 (did you mean --seed?)" in err
    err = _error(capsys, "plan", "show", "p.yaml", "--jsn")
    assert err.startswith("usage: growlm plan show ") and "(did you mean --json?)" in err


def test_a_mistyped_command_gets_a_suggestion(capsys):
    assert "did you mean 'models'?" in _error(capsys, "modles")


def test_version(capsys):
    from growlm.provenance import provenance

    with pytest.raises(SystemExit):
        main(["--version"])
    out = capsys.readouterr().out.strip()
    code = provenance()  # tests/test_provenance.py checks what it names
    assert out == f"growlm {growlm.__version__} (" + (f"commit {code.commit}, " if code.commit else "") + \
        f"source {code.source_hash})"


def test_unknown_growth_field_lists_only_growable_fields():
    from growlm.errors import GrowthError
    from growlm.growth.grow import check_request, growable_fields

    config = small_config("nexus")
    with pytest.raises(GrowthError) as bad:
        check_request(config, {"nexus_mm": 64})
    message = str(bad.value)
    assert "did you mean 'nexus_m'?" in message
    assert message.endswith("valid: " + ", ".join(sorted(growable_fields("nexus"))))
    assert "rope_theta" not in message  # a config field that cannot grow is no valid choice


def test_growth_warnings_name_the_scheme_not_a_flag():
    """Plans choose schemes too (a layerwise plan's stages default to fresh): a warning must not
    speak of an --init the user never passed, and fresh (not lossless by design) is not warned."""
    from growlm.growth import grow_model, parse_init

    config = small_config("qwen3")
    deeper = {"num_hidden_layers": config.num_hidden_layers + 1}
    assert grow_model(make_model(config), deeper, parse_init("fresh")).warnings == []
    warnings = grow_model(make_model(config), deeper, parse_init("random")).warnings
    assert warnings and all("--init" not in w for w in warnings) and warnings[-1].startswith("init random")
