"""The README's set-up commands are what CI runs."""

import subprocess

from tests.conftest import REPO


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text().splitlines()
    first_screen = readme[: readme.index("## What it does")]
    demo = first_screen[first_screen.index(next(line for line in first_screen if line.startswith("# 1."))) + 1]
    tests = first_screen[first_screen.index(next(line for line in first_screen if line.startswith("# 2."))) + 1]
    assert demo.endswith("growlm demo") and "pytest" in tests
    extracted = subprocess.run(["awk", "/^# 2\\. /{getline; print; exit}", "README.md"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
    assert extracted == tests
    assert "README.md" in (REPO / ".ci" / "run").read_text()
