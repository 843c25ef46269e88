"""Every code block of README.md and docs/*.md is run or checked, so the examples cannot rot.

Per page, in a fresh working folder holding a small `mine.csv` (label column `label`):
* a ```python or ```yaml block whose first line (after a Hydra `# @package` line) is a comment
  naming a file (`# mypkg/x.py`) is written there; other Python blocks run, in order, in one namespace per page; other YAML blocks
  must parse;
* a ```bash block's commands are checked without running them: `valbench` overrides compose with
  Hydra (each value of a sweep), `valbench-report` and `python -m valbench.perf` arguments parse,
  `make` targets exist in the Makefile, `pip install` extras exist in pyproject.toml;
* a ```text block (a diagram, a folder listing) is only shown; a block without a language fails.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(?P<lang>\S*)\n(?P<body>.*?)^```$", re.M | re.S)
FILE_COMMENT = re.compile(r"^(# @package \S+\n)?# (?P<path>[\w./-]+\.(py|yaml))\b")
LANGUAGES = ("python", "bash", "yaml", "text")


def code_blocks(page: Path) -> list[tuple[str, int, str]]:
    """(language, line, body) of every fenced block of `page`."""
    text = page.read_text()
    return [
        (m["lang"], text.count("\n", 0, m.start()) + 1, m["body"]) for m in FENCE.finditer(text)
    ]


def commands(body: str, folder: Path) -> list[list[str]]:
    """The bash block's commands as argument lists ($PWD is the working folder, comments dropped)."""
    joined = body.replace("\\\n", " ").replace("$PWD", str(folder))
    return [args for line in joined.splitlines() if (args := shlex.split(line, comments=True))]


def _sweep_variants(overrides: list[str]) -> list[list[str]]:
    """The first value of every sweep, then each other value of each sweep with the others first."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    values = [
        [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()]
        if o.is_sweep_override()
        else [o.input_line]
        for o in parsed
    ]
    first = [v[0] for v in values]
    variants = [first]
    for i, options in enumerate(values):
        variants += [first[:i] + [v] + first[i + 1 :] for v in options[1:]]
    return variants


def check_valbench(args: list[str]) -> None:
    from valbench.problem import compose

    overrides = [a for a in args if a not in ("-m", "--multirun")]
    assert all(not a.startswith("-") for a in overrides), f"unknown flag in {args}"
    for variant in _sweep_variants(overrides):
        compose(variant, return_hydra_config=True)


def check_report(args: list[str]) -> None:
    from valbench.report.cli import _parser

    _parser().parse_args(args)


def check_perf(args: list[str]) -> None:
    from valbench.perf import COMMANDS

    assert args[0] in COMMANDS, f"no perf command {args[0]!r}; commands: {list(COMMANDS)}"
    import importlib

    help_text = io.StringIO()
    with contextlib.redirect_stdout(help_text), pytest.raises(SystemExit):
        importlib.import_module(COMMANDS[args[0]]).main(["--help"])
    flags = [a.split("=")[0] for a in args[1:] if a.startswith("--")]
    missing = [f for f in flags if f not in help_text.getvalue()]
    assert not missing, f"python -m valbench.perf {args[0]} has no {missing}"


def check_make(args: list[str]) -> None:
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    for target in (a for a in args[1:] if "=" not in a):
        assert target in targets, f"no make target {target!r}; targets: {sorted(targets)}"


def check_pip(args: list[str]) -> None:
    section = (ROOT / "pyproject.toml").read_text().split("[project.optional-dependencies]")[1]
    extras = re.findall(r"^(\w+) = \[", section.split("\n[")[0], re.M)
    for spec in (a for a in args if a.startswith(".[")):
        for extra in spec[2:-1].split(","):
            assert extra in extras, f"pyproject.toml has no extra {extra!r}; extras: {extras}"


CHECKS = {
    "valbench": check_valbench,
    "valbench-report": check_report,
    "make": check_make,
    "pip": check_pip,
}


def check_command(args: list[str]) -> None:
    program = Path(args[0]).name
    if program == "python" and args[1:3] == ["-m", "valbench.perf"]:
        return check_perf(args[3:])
    if program in CHECKS:
        return CHECKS[program](args[1:])
    raise AssertionError(f"no check for the command {shlex.join(args)!r}: add one to {__file__}")


def _write_fixture(folder: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4))
    label = np.where(x[:, 0] - x[:, 1] > 0, "yes", "no")
    pd.DataFrame({**{f"f{j}": x[:, j] for j in range(4)}, "label": label}).to_csv(
        folder / "mine.csv", index=False
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_code_block_runs_or_checks(page, tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    _write_fixture(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PWD", str(tmp_path))
    namespace = {"__name__": "__docs__"}
    for lang, line, body in code_blocks(page):
        where = f"{page.relative_to(ROOT)}:{line}"
        assert lang in LANGUAGES, f"{where}: a block's language must be one of {LANGUAGES}"
        named = FILE_COMMENT.match(body)
        try:
            if lang in ("python", "yaml") and named:
                target = tmp_path / named["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(body)
            elif lang == "python":
                exec(compile(body, where, "exec"), namespace)
            elif lang == "yaml":
                OmegaConf.create(body)
            elif lang == "bash":
                for args in commands(body, tmp_path):
                    check_command(args)
        except Exception as err:
            raise AssertionError(f"{where}: {type(err).__name__}: {err}") from err
    for module in [m for m in sys.modules if m == "mypkg" or m.startswith("mypkg.")]:
        del sys.modules[module]  # another page may write its own


def test_the_readme_is_a_front_page():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_image_exists(page):
    for link in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
        assert (page.parent / link).exists(), f"{page.relative_to(ROOT)} links {link}: no such file"
