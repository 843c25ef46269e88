"""docs/methods.md, the reference of every method config, generated from conf/method/*.yaml.

Each YAML file's leading comment says what the method computes and each key's inline comment what
the key means; `page()` turns them into one Markdown page (a variant with a defaults list, such as
ame_knockoff's `defaults: [ame]`, lists its base's keys with its own changes marked), so the page
cannot drift from the configs. `valbench-report readme` writes it; `--check` reports it when stale.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources

PAGE = "docs/methods.md"
KEY = re.compile(r"^(?P<key>[A-Za-z_]\w*):(?P<value>[^#]*?)\s*(?:#\s?(?P<comment>.*))?$")
MORE = re.compile(r"^\s+#\s?(?P<comment>.*)$")  # a comment continued on the next line
LIST_ITEM = re.compile(r"^\s+-\s*(?P<item>\w+)")


@dataclass
class MethodConfig:
    """One conf/method/NAME.yaml as written: its leading comment, target, keys and base configs."""

    name: str
    about: list[str] = field(default_factory=list)  # the leading comment's lines
    target: str = ""
    keys: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (default, meaning)
    bases: list[str] = field(default_factory=list)


def parse(name: str, text: str) -> MethodConfig:
    """The parts of a method config's text that the page shows (values as written in the file)."""
    config, about, last, in_defaults = MethodConfig(name), [], None, False
    for line in text.splitlines():
        if line.startswith("#") and last is None and not config.target:
            about.append(line.lstrip("#").strip())
        elif (more := MORE.match(line)) and last is not None:
            value, meaning = config.keys[last]
            config.keys[last] = (value, f"{meaning} {more['comment'].strip()}".strip())
        elif in_defaults and (item := LIST_ITEM.match(line)):
            if item["item"] != "_self_":
                config.bases.append(item["item"])
        elif match := KEY.match(line):
            key, value = match["key"], match["value"].strip()
            in_defaults, last = key == "defaults", None
            if key == "_target_":
                config.target = value
            elif key != "defaults":
                config.keys[key] = (value, (match["comment"] or "").strip())
                last = key
    config.about = about
    return config


def load_all() -> dict[str, MethodConfig]:
    """Every conf/method config by name, read from the installed valbench.conf package."""
    folder = resources.files("valbench.conf").joinpath("method")
    files = sorted(p for p in folder.iterdir() if p.name.endswith(".yaml"))
    return {p.name[:-5]: parse(p.name[:-5], p.read_text()) for p in files}


def _cell(text: str) -> str:
    return text.replace("|", "\\|") if text else ""


def resolved(config: MethodConfig, configs: dict[str, MethodConfig]):
    """(target, [(key, default, meaning, changed)]) with the keys of the base configs first."""
    rows, target = {}, config.target
    for base in config.bases:
        base_target, base_rows = resolved(configs[base], configs)
        target = target or base_target
        rows.update({k: (v, m, False) for k, v, m, _ in base_rows})
    for key, (value, meaning) in config.keys.items():
        rows[key] = (value, meaning or rows.get(key, ("", "", False))[1], bool(config.bases))
    return target, [(k, v, m, c) for k, (v, m, c) in rows.items()]


def page(configs: dict[str, MethodConfig] | None = None) -> str:
    """The Markdown text of docs/methods.md."""
    configs = load_all() if configs is None else configs
    out = [
        "# Method reference",
        "",
        "<!-- Generated from conf/method/*.yaml by `make readme` (valbench-report readme); "
        "edit the YAML files, not this page. -->",
        "",
        "Every method config in `conf/method/`, with its keys and their defaults. Set a key on the "
        "command line as `method.KEY=VALUE` (e.g. `valbench method=ame method.budget=500`) or in "
        'Python as `valbench.make_method("ame", budget=500)`. Subset methods take `budget`, the '
        "most game evaluations they spend; model-based methods read the problem's data and model.",
        "",
        "| method | what it computes | class |",
        "|---|---|---|",
    ]
    for name, config in configs.items():
        target, _ = resolved(config, configs)
        about = config.about[0] if config.about else f"{', '.join(config.bases)}, other defaults"
        out.append(f"| [`{name}`](#{name}) | {_cell(about)} | `{target}` |")
    for name, config in configs.items():
        target, rows = resolved(config, configs)
        out += ["", f"## {name}", ""]
        if config.about:
            out += [" ".join(config.about), ""]
        base = f" (every key of `{'`, `'.join(config.bases)}`; * marks this config's changes)"
        out.append(f"`_target_: {target}`" + (base if config.bases else ""))
        out.append("")
        if not rows:
            out.append("No keys.")
            continue
        out += ["| key | default | meaning |", "|---|---|---|"]
        for key, value, meaning, changed in rows:
            out.append(
                f"| `{key}`{' *' if changed else ''} | `{_cell(value)}` | {_cell(meaning)} |"
            )
    return "\n".join(out) + "\n"
