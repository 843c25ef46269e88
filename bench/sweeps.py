"""What `valbench -m` adds to Hydra's sweeps: group keys set across a swept group, and a loud end.

* `valbench -m method=ame,banzhaf method.budget=500`: Hydra checks `method.budget` against the
  default method (random, which has no budget) before it sweeps, and suggests `+method.budget`, which
  then fails for the methods that have one. `group_key_overrides` rewrites such an override to
  `++method.budget=500` when every swept option has the key, and names the options without it
  otherwise; `job_dirname` (the sweep's `subdir`) names the job folders without the `++`.
* `SweepOutcome`, a Hydra callback (conf/config.yaml), ends a sweep in which any job failed with a
  summary (each failed job's folder and first error line) and exit status 1, whatever the launcher:
  it reads the records that the sweep wrote, so jobs in other processes or on other machines count.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from .problem import GROUPS, group_config
from .store.records import RECORD_NAME, read_record

_ABSENT = object()


def _composed(group: str, name: str) -> DictConfig | None:
    """The option's composed config; None for a name Hydra will report itself."""
    try:
        return group_config(group, name)
    except ValueError:
        return None


def group_key_overrides(args: list[str]) -> list[str]:
    """`args` with each `GROUP.KEY=VALUE` override of a swept GROUP made `++GROUP.KEY=VALUE`
    when every swept option has KEY; a ValueError names the options without it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    parsed = {}
    for i, arg in enumerate(args):
        if "=" in arg and not arg.startswith("-"):
            try:
                parsed[i] = parser.parse_override(arg)
            except HydraException:
                pass  # Hydra reports it
    swept = {}
    for override in parsed.values():
        group = override.key_or_group
        if group in GROUPS and override.is_sweep_override() and override.package is None:
            try:
                swept[group] = [str(v) for v in override.sweep_string_iterator()]
            except Exception:  # a range or glob: leave it to Hydra
                pass
    out = list(args)
    for i, override in parsed.items():
        group, _, key = override.key_or_group.partition(".")
        if group not in swept or not key or override.input_line[0] in "+~":
            continue
        configs = {name: _composed(group, name) for name in swept[group]}
        lacking = [
            name
            for name, cfg in configs.items()
            if cfg is not None and OmegaConf.select(cfg, key, default=_ABSENT) is _ABSENT
        ]
        if lacking:
            raise ValueError(
                f"{override.input_line}: {group} {', '.join(lacking)} of the sweep "
                f"{group}={','.join(swept[group])} {'has' if len(lacking) == 1 else 'have'} no "
                f"key {key!r}; sweep {'it' if len(lacking) == 1 else 'them'} separately"
            )
        out[i] = "++" + args[i]
    return out


def job_dirname(task, exclude) -> str:
    """A job's folder name: Hydra's `override_dirname` of its overrides `task` (sorted `key=value`
    joined by commas, `exclude` keys left out), with the `++` of `group_key_overrides` dropped."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    lines = [line.removeprefix("++") for line in task]
    parsed = OverridesParser.create().parse_overrides(lines)
    return ",".join(sorted(o.input_line for o in parsed if o.key_or_group not in set(exclude)))


OmegaConf.register_new_resolver("valbench_job_dir", job_dirname, replace=True)


def _records(folder: Path) -> dict[Path, tuple[int, int]]:
    """{record path: (inode, modification time in ns)} of every record under `folder` (records
    are replaced atomically, so a rewritten one has a new inode even where mtimes are coarse)."""
    stats = {p: p.stat() for p in Path(folder).rglob(RECORD_NAME)}
    return {p: (s.st_ino, s.st_mtime_ns) for p, s in stats.items()}


def failed_jobs(folder: Path, before: dict) -> list[tuple[Path, str]]:
    """(job folder, first error line) of each record under `folder` written since the snapshot
    `before` (see `_records`) whose status is error, or that does not read back."""
    failed = []
    for path, stamp in sorted(_records(folder).items()):
        if before.get(path) == stamp:
            continue  # not written by this sweep: a skipped job
        record = read_record(path)
        if record is None:
            failed.append((path.parent, f"its record {path} does not read back"))
        elif record.get("status") == "error":
            error = str(record.get("error") or "unknown error").strip()
            failed.append((path.parent, error.splitlines()[0] if error else "unknown error"))
    return failed


def summary(failed: list[tuple[Path, str]], folder: Path) -> str:
    lines = [f"valbench: {len(failed)} job(s) of the sweep in {folder} failed:"]
    lines += [f"  {job}: {error}" for job, error in failed]
    return "\n".join(lines)


class SweepOutcome(Callback):
    """Exit 1 with a summary after a sweep in which a job failed (see the module docstring)."""

    def __init__(self) -> None:
        self.before: dict = {}

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        folder = Path(config.hydra.sweep.dir)
        self.before = _records(folder) if folder.exists() else {}

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        folder = Path(config.hydra.sweep.dir)
        failed = failed_jobs(folder, self.before) if folder.exists() else []
        if failed:
            print(summary(failed, folder), file=sys.stderr, flush=True)
            raise SystemExit(1)
