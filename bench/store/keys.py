"""The one list of which run-config keys matter for what; every other module imports these.

A run config (conf/config.yaml, flattened as `model.steps`) has keys that
* fix the game (`defines_problem`): they decide every U(S), so they make the evaluation store's
  fingerprint and match an SV estimate with its reference job;
* change a job's result: everything except NOT_RESULT_KEYS; a rerun that differs only in those
  reuses the finished job;
* name a job's setting in tables: everything except NOT_SETTING_KEYS (seeds are averaged over).
Hydra's job folder names leave out NOT_DIRNAME_KEYS; conf/config.yaml's `exclude_keys` cannot import
them, so tests/conf pins that the two agree.
"""

from __future__ import annotations

PROBLEM_KEYS = ("dataset", "corruption", "model", "utility", "seed")
# Where and in what chunks a submodel is trained and where the data files lie, not what it is: shards
# trained on other machines (other mounts, other GPU memory) belong to the same problem.
NOT_PROBLEM_KEYS = ("device", "root", "download", "memory_mb", "cpu_chunk")
NOT_RESULT_KEYS = ("progress",)  # how a job reports, not what it computes
NOT_SETTING_KEYS = ("seed", "name", *NOT_RESULT_KEYS)  # top-level keys that are no setting
NOT_DIRNAME_KEYS = ("experiment", "name", *NOT_RESULT_KEYS)  # conf/config.yaml exclude_keys


def defines_problem(key: str) -> bool:
    """Whether a flattened config key (`model.steps`, `seed`) fixes the game: it lies under
    PROBLEM_KEYS and is not one of their NOT_PROBLEM_KEYS."""
    group, *rest = key.split(".")
    return group in PROBLEM_KEYS and not (rest and rest[0] in NOT_PROBLEM_KEYS)
