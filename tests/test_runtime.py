"""No hidden global state: run options are one value handed to each model, importing growlm
changes nothing about the process, and the process-wide settings are an entry point's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import growlm.models.base as base
import growlm.models.layers as layers
import growlm.models.nexus as nexus
import growlm.models.tokenformer as tokenformer
from growlm.errors import ConfigError
from growlm.models import apply_runtime
from growlm.runtime import ENVIRONMENT, RuntimeOptions
from tests.conftest import make_model, small_config

SRC = Path(__file__).resolve().parents[1] / "src"


def _python(code: str, *args: str, **env: str | None) -> dict:
    environ = {**os.environ, "PYTHONPATH": str(SRC)}
    for key, value in env.items():
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=environ, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the options value ----------------------------------------------------------------------
def test_options_defaults_environment_and_errors():
    assert RuntimeOptions() == RuntimeOptions(fuse_linears=None, nexus_fused=None, nexus_pad=8,
                                              pattention_kernel=None, rotary_opaque=True)
    env = {"GROWLM_FUSE_LINEARS": "0", "GROWLM_NEXUS_FUSED": " AUTO ", "GROWLM_NEXUS_PAD": "16",
           "GROWLM_PATTENTION_KERNEL": "1", "GROWLM_ROTARY_OPAQUE": "0"}
    assert RuntimeOptions.from_env(env) == RuntimeOptions(fuse_linears=False, nexus_fused=None, nexus_pad=16,
                                                          pattention_kernel=True, rotary_opaque=False)
    assert RuntimeOptions.from_env({"GROWLM_ROTARY_OPAQUE": "auto"}).rotary_opaque is True
    # flags over the environment; a flag not given (None) leaves the field alone
    flags = RuntimeOptions.from_env(env, nexus_fused=False, fuse_linears=None)
    assert flags.nexus_fused is False and flags.fuse_linears is False
    with pytest.raises(ConfigError, match="GROWLM_PATTENTION_KERNEL must be one of auto, 1, 0, got 'on'"):
        RuntimeOptions.from_env({"GROWLM_PATTENTION_KERNEL": "on"})
    with pytest.raises(ConfigError, match=r"nexus_pad .* must be a positive integer, got 0"):
        RuntimeOptions(nexus_pad=0)
    with pytest.raises(ConfigError, match="unknown runtime option 'fused'"):
        RuntimeOptions.from_env({}, fused=True)
    with pytest.raises(Exception, match="cannot assign"):
        RuntimeOptions().nexus_pad = 4  # frozen: a value, not a switchboard


def test_only_the_options_module_names_the_variables_in_code():
    """Library code never reads a switch from the environment itself (docstrings may name them)."""
    import ast

    found = {}
    for path in (SRC / "growlm").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in ENVIRONMENT.values():
                found.setdefault(node.value, set()).add(path.relative_to(SRC).as_posix())
    assert found == {v: {"growlm/runtime.py"} for v in ENVIRONMENT.values()}


# -- the options reach the modules, per model ----------------------------------------------------
def _count_calls(monkeypatch, module, name: str) -> list:
    calls = []
    real = getattr(module, name)

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return calls


def test_two_nexus_models_in_one_process_take_their_own_paths(monkeypatch):
    config = small_config("nexus", 1)
    fused, plain = make_model(config), make_model(config)
    assert apply_runtime(fused, RuntimeOptions(nexus_fused=True, nexus_pad=16)) > 0
    apply_runtime(plain, RuntimeOptions(nexus_fused=False))
    calls = _count_calls(monkeypatch, nexus, "fused_nexus_qkv")
    ids = torch.randint(0, 512, (2, 7))
    with torch.no_grad():
        out_plain = plain(input_ids=ids).logits
        assert calls == []
        out_fused = fused(input_ids=ids).logits
        assert len(calls) == config.num_hidden_layers and all(args[2] == 16 for args, _ in calls)
        plain(input_ids=ids)
        assert len(calls) == config.num_hidden_layers  # the plain model still runs one by one
    torch.testing.assert_close(out_fused, out_plain, rtol=1e-5, atol=1e-5)


def test_linear_fusion_rotary_tables_and_the_pattention_kernel_are_per_model(monkeypatch):
    ids = torch.randint(0, 512, (1, 5))
    qwen = small_config("qwen3", 0)
    on, off = make_model(qwen), make_model(qwen)
    apply_runtime(on, RuntimeOptions(fuse_linears=True, rotary_opaque=False))
    apply_runtime(off, RuntimeOptions(fuse_linears=False))
    attention = _count_calls(monkeypatch, base, "fused_linears")
    ffn = _count_calls(monkeypatch, layers, "fused_linears")
    tables = _count_calls(monkeypatch, base, "rotary_tables")
    with torch.no_grad():
        off(input_ids=ids)
        assert attention == [] and ffn == [] and tables[-1][0][-1] is True
        on(input_ids=ids)
    assert len(attention) == len(ffn) == qwen.num_hidden_layers and tables[-1][0][-1] is False

    former = small_config("tokenformer", 0)
    kernel_off, auto = make_model(former), make_model(former)
    apply_runtime(kernel_off, RuntimeOptions(pattention_kernel=False))
    norms = _count_calls(monkeypatch, tokenformer, "l2_norm_gelu")
    with torch.no_grad():
        kernel_off(input_ids=ids)
        seen_off = {args[2] for args, _ in norms}
        norms.clear()
        auto(input_ids=ids)
    assert seen_off == {False} and {args[2] for args, _ in norms} == {None}


def test_the_trainer_applies_the_options_it_is_given(tiny_data, tmp_path):
    from growlm.training.trainer import Trainer
    from tests.conftest import train_config

    trainer = Trainer(train_config(tiny_data, tmp_path / "run"), options=RuntimeOptions(nexus_fused=True, nexus_pad=4))
    try:
        att = trainer.base.model.layers[0].self_attn
        assert att.fused is True and att.pad == 4
    finally:
        trainer._modes.close()
    default = Trainer(train_config(tiny_data, tmp_path / "other"))
    try:
        assert default.base.model.layers[0].self_attn.fused is None  # auto, whatever the environment says
    finally:
        default._modes.close()


# -- the process ---------------------------------------------------------------------------------
IMPORT_EVERYTHING = r"""
import ctypes, importlib, json, os, pkgutil, sys
GROWLM = os.path.join(sys.argv[1], "growlm")  # the source tree whose reads count
reads, libc = [], []
getitem = os._Environ.__getitem__

def spy(self, key):  # every os.environ lookup (get, in, getenv) goes through here
    frame = sys._getframe(1)
    while frame and frame.f_code.co_filename.endswith(("os.py", "_collections_abc.py", "<frozen os>",
                                                       "<frozen _collections_abc>")):
        frame = frame.f_back
    if frame and frame.f_code.co_filename.startswith(GROWLM):
        reads.append(f"{key} at {frame.f_code.co_filename}:{frame.f_lineno}")
    return getitem(self, key)

os._Environ.__getitem__ = spy
cdll = ctypes.CDLL

class LibcSpy(cdll):
    def __init__(self, name, *args, **kwargs):
        if name and os.path.basename(str(name)).startswith("libc.so"):
            libc.append(str(name))
        super().__init__(name, *args, **kwargs)

ctypes.CDLL = LibcSpy
import matplotlib, torch, torch._dynamo.config, torch._functorch.config, torch._inductor.config
configs = (torch._dynamo.config, torch._inductor.config, torch._functorch.config)
before = [c.get_config_copy() for c in configs]
backend = dict.__getitem__(matplotlib.rcParams, "backend")
mpl_env = os.environ.get("MPLBACKEND")
import growlm
names = sorted(m.name for m in pkgutil.walk_packages(growlm.__path__, "growlm."))
for name in names:
    importlib.import_module(name)
changed = [k for c, b in zip(configs, before) for k, v in c.get_config_copy().items() if b.get(k) != v]
print(json.dumps({"modules": len(names), "env_reads": reads, "libc": libc, "compiler_changed": changed,
                  "backend_same": dict.__getitem__(matplotlib.rcParams, "backend") == backend,
                  "mplbackend_same": os.environ.get("MPLBACKEND") == mpl_env,
                  "pyplot": "matplotlib.pyplot" in sys.modules}))
"""


def test_importing_every_growlm_module_changes_no_process_state():
    """Subprocess: import growlm and every one of its modules; no environment variable read by
    growlm code, no glibc tuning, no compiler setting, no matplotlib backend or pyplot."""
    result = _python(IMPORT_EVERYTHING, str(SRC), GROWLM_NEXUS_FUSED="0", GROWLM_FUSE_LINEARS="0")
    assert result["modules"] > 50  # the walk did find the package
    assert result == {**result, "env_reads": [], "libc": [], "compiler_changed": [], "backend_same": True,
                      "mplbackend_same": True, "pyplot": False}


def test_configure_process_is_what_an_entry_point_gets():
    code = (
        "import json, os, sys; from growlm.system import configure_process, RECOMPILE_LIMIT; "
        "configure_process(); configure_process(); "  # idempotent
        "no_torch = 'torch' not in sys.modules; "  # growlm --help stays fast
        "import torch._dynamo.config as d, torch._inductor.config as i, growlm.system as s; "
        "print(json.dumps({'no_torch': no_torch, 'mpl': os.environ.get('MPLBACKEND'), 'limit': d.recompile_limit, "
        "'wanted': RECOMPILE_LIMIT, 'cache': i.fx_graph_cache, 'tuned': s._tuned or not sys.platform.startswith('linux')}))")
    result = _python(code, MPLBACKEND=None, TORCHINDUCTOR_FX_GRAPH_CACHE=None)
    assert result == {"no_torch": True, "mpl": "agg", "limit": result["wanted"], "wanted": 64, "cache": True,
                      "tuned": True}
    # a backend the user chose is kept
    assert _python("import json, os; from growlm.system import configure_process; configure_process(); "
                   "print(json.dumps(os.environ['MPLBACKEND']))", MPLBACKEND="svg") == "svg"


def test_cli_configures_only_its_own_process(monkeypatch, tmp_path):
    """``growlm`` (argv from the command line) configures the process; a caller passing argv keeps its own."""
    import growlm.system
    from growlm.cli.main import main

    calls = []
    monkeypatch.setattr(growlm.system, "configure_process", lambda: calls.append(1))
    missing = str(tmp_path / "nothing")
    assert main(["info", missing]) == 2 and calls == []
    assert main(["info", missing], configure=True) == 2 and calls == [1]
    monkeypatch.setattr(sys, "argv", ["growlm", "info", missing])
    assert main() == 2 and calls == [1, 1]


def test_figures_need_no_pyplot(tmp_path):
    """A figure written in a fresh process leaves pyplot unimported and the backend unchosen."""
    code = ("import json, sys, matplotlib; from growlm.plotting import plot_loss_curves; "
            f"plot_loss_curves([{{'label': 'a', 'x': [0, 1], 'y': [2.0, 1.0]}}], {str(tmp_path / 'f.png')!r}); "
            "import matplotlib.rcsetup as r; print(json.dumps({'pyplot': 'matplotlib.pyplot' in sys.modules, "
            "'unchosen': dict.__getitem__(matplotlib.rcParams, 'backend') is r._auto_backend_sentinel}))")
    result = _python(code, MPLBACKEND=None)
    assert result == {"pyplot": False, "unchosen": True}
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_growlm_train_reads_the_variables_once_and_passes_them_down(monkeypatch, tiny_data, tmp_path):
    import yaml

    import growlm.training.trainer as trainer
    from growlm.cli.main import main

    seen = []
    monkeypatch.setattr(trainer, "start_run", lambda cfg, options=None: seen.append(options))  # no summary
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"model": "nexus-tiny", "data": str(tiny_data), "out_dir": str(tmp_path / "o"),
                                      "device": "cpu", "max_steps": 1}))
    monkeypatch.setenv("GROWLM_NEXUS_FUSED", "1")
    monkeypatch.setenv("GROWLM_NEXUS_PAD", "32")
    assert main(["train", str(config)]) == 0
    assert seen == [RuntimeOptions(nexus_fused=True, nexus_pad=32)]
    monkeypatch.setenv("GROWLM_NEXUS_PAD", "-1")
    assert main(["train", str(config)]) == 2  # a bad value is the command's one-line error
