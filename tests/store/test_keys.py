"""The one list of config keys (valbench.store.keys) agrees with conf/config.yaml and its users."""

from __future__ import annotations

from valbench.problem import compose
from valbench.report.tables import NOT_SETTINGS
from valbench.store.keys import NOT_DIRNAME_KEYS, NOT_RESULT_KEYS, NOT_SETTING_KEYS, defines_problem


def test_job_folder_names_leave_out_the_dirname_keys():
    cfg = compose(return_hydra_config=True)
    assert tuple(cfg.hydra.job.config.override_dirname.exclude_keys) == NOT_DIRNAME_KEYS


def test_result_keys_are_neither_settings_nor_problem_keys():
    assert set(NOT_RESULT_KEYS) <= set(NOT_SETTING_KEYS) & set(NOT_DIRNAME_KEYS)
    assert NOT_SETTINGS == ("config.seed", "config.name", "config.progress")
    assert not any(defines_problem(k) for k in NOT_RESULT_KEYS)
    assert defines_problem("seed") and not defines_problem("model.cpu_chunk")
