"""The committed results' commands: every ``results/**/COMMAND`` is valid shell, every sweep in it names a chapter
and only that chapter's parameters, and ``results/campaign.sh`` runs exactly those COMMAND files (nothing runs
here: the commands are read, not executed)."""
from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from critkl.sweep import notebook_parameters

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = sorted((ROOT / "results").rglob("COMMAND"))
CAMPAIGN = ROOT / "results" / "campaign.sh"


def _ids(paths):
    return [str(p.parent.relative_to(ROOT / "results")) for p in paths]


def sweeps(text: str) -> list[tuple[str, list[str]]]:
    """(chapter, parameter names of --grid/--set) of each ``critkl sweep`` in a shell text (line continuations
    joined, comments dropped)."""
    lines = [ln for ln in text.replace("\\\n", " ").splitlines() if not ln.lstrip().startswith("#")]
    out = []
    for line in lines:
        if "critkl sweep" not in line:
            continue
        words = shlex.split(line[line.index("critkl sweep"):].split(";")[0])
        names = [words[i + 1].partition("=")[0] for i, w in enumerate(words[:-1]) if w in ("--grid", "--set")]
        out.append((words[2], names))
    return out


@pytest.mark.parametrize("command", COMMANDS, ids=_ids(COMMANDS))
def test_every_command_is_valid_shell_and_sweeps_only_declared_parameters(command):
    assert subprocess.run(["bash", "-n", str(command)], capture_output=True).returncode == 0
    for chapter, names in sweeps(command.read_text()):
        notebook = ROOT / chapter
        assert notebook.is_file(), f"{command}: no chapter {chapter}"
        unknown = sorted(set(names) - set(notebook_parameters(notebook)))
        assert not unknown, f"{command}: {chapter} has no parameters {unknown}"


def test_sweeps_parser_reads_names_across_line_continuations():
    text = "# a comment: critkl sweep book/x.ipynb --grid no=1\nFOO=1 critkl sweep book/t.ipynb --grid seed=$S \\\n" \
           "  --set 'variants=a b' --out d --jobs 2\n"
    assert sweeps(text) == [("book/t.ipynb", ["seed", "variants"])]


def test_campaign_runs_each_step_from_its_command_and_rejects_an_unknown_step(tmp_path):
    text = CAMPAIGN.read_text()
    steps = re.search(r'^ALL="([^"]+)"', text, re.M).group(1).split()
    for step in steps:
        folder = step.split("-")[0]  # frontier-a2c -> results/frontier/COMMAND with PRESET=cpu-a2c
        assert (ROOT / "results" / folder / "COMMAND").is_file(), step
        if "-" in step:
            assert f"PRESET=cpu-{step.split('-')[1]} bash -e results/{folder}/COMMAND" in text
    r = subprocess.run(["bash", str(CAMPAIGN), "levels", "nope"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "unknown step 'nope'" in r.stderr and "frontier-grpo" in r.stderr
    assert "worktree" not in r.stdout  # stopped before creating anything
