"""Every chapter runs at parameters other than its defaults (the book is for re-executing with new ones).

Each case executes a chapter with papermill on the ``tiny`` presets (a 20-step model trained in the test's
own cache), at other levels, seeds and splits than the chapter's defaults. A chapter that only works at
its defaults (a fixed example with no critical token at another level, a level hard-coded in a lookup)
fails here, not in a reader's hands. nbval checks the defaults' outputs; this checks that the others run.
"""
from __future__ import annotations

from pathlib import Path

import papermill
import pytest

from critkl.sweep import notebook_parameters

BOOK = Path(__file__).resolve().parent.parent / "book"
TINY = dict(preset="tiny")
CASES = [
    ("task", dict(level=2, seed=3, n_samples=100)),
    ("task", dict(level=6, seed=1, n_samples=100)),
    ("pretraining", dict(**TINY, level=2, seed=1, eval_samples=8)),
    ("pretraining", dict(**TINY, level=5, seed=2, eval_samples=8)),
    ("critical_tokens", dict(**TINY, level=4, seed=1, extra_digits=2, n_generations=4, n_failures=8,
                             ref_temperature=4.0)),
    ("critical_tokens", dict(**TINY, level=2, seed=2, n_generations=4, n_failures=8)),
    ("kl_penalty", dict(**TINY, level=4, seed=1, n_problems=4)),
    ("kl_comparison", dict(pretrain_preset="tiny", preset="tiny", level=2, pretrain_seed=1, seed=3,
                           extra_digits=2, rounds=1, eval_plus=8, beta=1.0, variants="standard prioritized",
                           certainty="entropy", alpha=10.0, ref_temperature=4.0)),
    ("kl_comparison", dict(pretrain_preset="tiny", preset="tiny", level=3, rounds=1, eval_plus=8,
                           variants="oracle oracle_inverse", top_entropy_quantile=0.2, advantage_weighting="entropy",
                           eval_mode="exact")),
    ("kl_comparison", dict(pretrain_preset="tiny", preset="tiny", level=2, rounds=1, eval_plus=8, variants="none")),
    ("sweeps", dict(grid_seeds="4", grid_samples="50", jobs=1)),
    ("results", dict(level=5)),
    ("regime", dict(level=2)),
    ("hyperparameters", dict(rl_presets="paper cpu-reinforce", pretrain_presets="paper cpu-modsum tiny", differing=False)),
    ("rl_methods", dict(beta=1.0, collapse_below=0.3, confidence=0.9)),  # a coefficient some methods lack yet
    ("ablation", dict(value="gain", confidence=0.9)),
    ("frontier", dict(method="grpo")),  # a method the committed sweep may lack: says so, draws nothing
    ("frontier", dict(value="auc_gain", confidence=0.9)),
    ("mechanism", dict(method="a2c")),
    ("levels", dict(confidence=0.9)),
    ("mechanism", dict(confidence=0.9)),
    ("beyond", dict(**TINY, level=4, pretrain_seed=1, n_problems=8, alphas="150", ref_temperature=4.0)),  # the one shipped level-2 checkpoint: another level, another number of panels
]


@pytest.mark.parametrize("chapter,params", CASES, ids=[f"{c}-{i}" for i, (c, _) in enumerate(CASES)])
def test_chapter_runs_at_other_parameters(chapter, params, tmp_path):
    notebook = BOOK / f"{chapter}.ipynb"
    declared = notebook_parameters(notebook)
    unknown = sorted(set(params) - set(declared))
    assert not unknown, f"{chapter} has no parameters {unknown}; it has {sorted(declared)}"
    assert any(params[k] != declared[k] for k in params), "a case must differ from the chapter's defaults"
    papermill.execute_notebook(str(notebook), str(tmp_path / notebook.name), parameters=params,
                               kernel_name="python3", cwd=str(BOOK), progress_bar=False,
                               execution_timeout=600)


# Chapter parameter -> the config field it stands for, per chapter; the chapter names its preset in the
# parameter given first. A default that differs from its preset on purpose is listed with the reason.
PRESET_FIELDS = {
    "pretraining": ("PretrainConfig", "preset", {"level": "level", "seed": "seed"}),
    "critical_tokens": ("PretrainConfig", "preset", {"level": "level", "seed": "seed"}),
    "kl_penalty": ("PretrainConfig", "preset", {"level": "level", "seed": "seed"}),
    "beyond": ("PretrainConfig", "preset", {"level": "level", "pretrain_seed": "seed"}),
    "kl_comparison": ("RLConfig", "preset", {"seed": "seed", "beta": "beta", "rounds": "rounds",
                                             "eval_plus": "eval_plus", "extra_digits": "extra_digits", "certainty": "certainty",
                                             "alpha": "alpha", "ref_temperature": "ref_temperature",
                                             "top_entropy_quantile": "top_entropy_quantile",
                                             "advantage_weighting": "advantage_weighting", "eval_mode": "eval_mode"}),
}
DELIBERATE = {("kl_comparison", "rounds"): "5 of the preset's 10 rounds keep the live run to minutes"}


@pytest.mark.parametrize("chapter", sorted(PRESET_FIELDS))
def test_chapter_defaults_agree_with_the_preset_they_name(chapter):
    """Chapters hand-write their parameters cell (papermill needs literals); this keeps each default equal to
    the value of the preset the chapter names, so the chapter runs what the README calls the default."""
    from critkl.config import pretrain_config, rl_config
    cls, preset_param, fields = PRESET_FIELDS[chapter]
    declared = notebook_parameters(BOOK / f"{chapter}.ipynb")
    cfg = (pretrain_config if cls == "PretrainConfig" else rl_config)(declared[preset_param])
    for param, field in fields.items():
        if (chapter, param) in DELIBERATE:
            assert declared[param] != getattr(cfg, field), f"{chapter}.{param} now agrees: drop it from DELIBERATE"
            continue
        assert declared[param] == getattr(cfg, field), (
            f"{chapter} declares {param} = {declared[param]!r}, its preset {declared[preset_param]!r} has "
            f"{field} = {getattr(cfg, field)!r}")
    # the RL calibration the certainty chapters use is the RL preset's
    if chapter in ("critical_tokens", "kl_penalty"):
        rl = rl_config("cpu-reinforce")
        t = declared.get("ref_temperature", declared.get("our_T"))
        assert t == rl.ref_temperature and declared.get("our_alpha", rl.alpha) == rl.alpha


@pytest.mark.parametrize("chapter", sorted(p.stem for p in BOOK.glob("*.ipynb")))
def test_papermill_reads_every_parameter_the_sweep_reads(chapter):
    """papermill parses a parameters cell line by line and skips (with a warning, then "unknown parameter" on
    injection) any line with a second '=', e.g. in its comment; critkl's sweep reads the cell with ast. Both
    must see the same names, or a sweep point's log fills with warnings and the parameter is not type-checked."""
    notebook = BOOK / f"{chapter}.ipynb"
    ours = notebook_parameters(notebook) if _has_parameters(notebook) else {}
    assert sorted(papermill.inspect_notebook(str(notebook))) == sorted(ours)


def _has_parameters(notebook: Path) -> bool:
    import json
    return any("parameters" in c["metadata"].get("tags", []) for c in json.loads(notebook.read_text())["cells"])


def _glued(notebook: Path) -> set:
    import json
    return {o.get("metadata", {}).get("scrapbook", {}).get("name") for c in json.loads(notebook.read_text())["cells"]
            for o in c.get("outputs", [])} - {None}


def _glue_refs(text: str) -> list:
    import re
    return re.findall(r"\{glue(?::[a-z]+)?\}`([^`]+)`", text)


@pytest.mark.parametrize("chapter", sorted(p.stem for p in BOOK.glob("*.ipynb")))
def test_every_glue_reference_is_glued_in_the_committed_outputs(chapter):
    """A {glue:text}`key` whose key a chapter does not glue (e.g. only for the methods its table happens to hold)
    is a warning, so `jupyter-book build -W` (make book, make test) fails: every referenced key must be glued."""
    import json
    notebook = BOOK / f"{chapter}.ipynb"
    text = "".join("".join(c["source"]) for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "markdown")
    missing = sorted({k for k in _glue_refs(text) if "::" not in k} - _glued(notebook))
    assert not missing, f"{chapter} references glue keys it does not glue: {missing}"


def test_the_intro_glues_only_keys_its_chapters_glue():
    refs = _glue_refs((BOOK / "intro.md").read_text())
    assert refs, "the intro's status table reads glued numbers"
    for ref in refs:
        path, _, key = ref.partition("::")
        key = key.split(":")[0]
        assert key in _glued(BOOK / path), f"intro.md: {path} does not glue {key}"


PRINT_WIDTH = 100  # characters of a printed line that fit the article at 1280 px (book/_static/critkl.css)
SCRIPTS = ("#!/bin/bash",)  # a printed script (the sbatch script of `sweeps`) keeps its lines: it is meant to be copied


@pytest.mark.parametrize("chapter", sorted(p.stem for p in BOOK.glob("*.ipynb")))
def test_printed_outputs_fit_the_page(chapter):
    """A printed line wider than the article scrolls sideways in the book: tables that wide go through
    ``critkl.plots.show_table`` (an HTML table whose cells wrap; tests/browser checks that it fits)."""
    import json
    wide = []
    for i, cell in enumerate(json.loads((BOOK / f"{chapter}.ipynb").read_text())["cells"]):
        for out in cell.get("outputs", []):
            if out.get("output_type") != "stream" or out.get("name") != "stdout":
                continue
            text = "".join(out["text"])
            if text.startswith(SCRIPTS):
                continue
            wide += [f"cell {i}: {len(line)} characters: {line[:60]}..." for line in text.splitlines()
                     if len(line) > PRINT_WIDTH]
    assert not wide, f"{chapter}: printed lines wider than {PRINT_WIDTH} characters:\n" + "\n".join(wide[:5])


# Characters of a line of included package code that fit the article at 1280 px: book/_static/critkl.css sets
# literalincluded code (div.highlight-default pre) in the 0.68rem monospace of the printed outputs.
CODE_WIDTH = 100


def _literalincludes(text: str) -> list:
    """``(path, options)`` of each ``{literalinclude}`` directive of MyST markdown, with its ``:key: value``
    options (``---``-delimited YAML options are read too, as flat ``key: value`` lines)."""
    import re
    out, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"\s*(?:`{3,}|~{3,}|:{3,})\{literalinclude\}\s*(.*?)\s*$", line)
        if not m:
            continue
        options, j = {}, i + 1
        yaml = j < len(lines) and lines[j].strip() == "---"
        j += yaml
        while j < len(lines):
            opt = re.match(r"\s*:([\w-]+):\s*(.*?)\s*$" if not yaml else r"\s*([\w-]+):\s*(.*?)\s*$", lines[j])
            if not opt:
                break
            options[opt.group(1)] = opt.group(2)
            j += 1
        out.append((m.group(1), options))
    return out


def _included_lines(path: Path, options: dict) -> list:
    """The lines a ``literalinclude`` of ``path`` with ``options`` shows, read by Sphinx's own reader (the
    one the book build uses); an AssertionError naming the file or region it cannot find."""
    from types import SimpleNamespace

    from sphinx.directives.code import LiteralIncludeReader
    assert path.is_file(), f"{path} does not exist"
    typed = {k: int(v) if k in ("dedent", "tab-width") and v else v for k, v in options.items()}
    try:
        text, _ = LiteralIncludeReader(str(path), typed, SimpleNamespace(source_encoding="utf-8")).read()
    except ValueError as e:  # a pyobject, start or end marker that is not in the file
        raise AssertionError(f"{path.name}: {options}: {e}") from None
    return text.splitlines()


@pytest.mark.parametrize("chapter", sorted(p.stem for p in BOOK.glob("*.ipynb")))
def test_included_code_fits_the_page(chapter):
    """Package code a chapter shows with ``{literalinclude}`` (a whole ``:pyobject:``, or the lines between
    markers) scrolls sideways in the book where a line is wider than the article: keep those regions of the
    source within ``CODE_WIDTH`` characters."""
    import json
    wide = []
    cells = json.loads((BOOK / f"{chapter}.ipynb").read_text())["cells"]
    for cell in cells:
        if cell["cell_type"] != "markdown":
            continue
        for target, options in _literalincludes("".join(cell["source"])):
            path = (BOOK.parent / target.lstrip("/")) if target.startswith("/") else (BOOK / target).resolve()
            wide += [f"{path.relative_to(BOOK.parent)} {options}: {len(line)} characters: {line.strip()[:50]}"
                     for line in _included_lines(path, options) if len(line) > CODE_WIDTH]
    assert not wide, (f"{chapter}: included code lines wider than {CODE_WIDTH} characters:\n"
                      + "\n".join(dict.fromkeys(wide)))
