"""From config to run: compose configs, build the Problem (data, truth, model config, game), build methods."""

from __future__ import annotations

from importlib import resources

from omegaconf import DictConfig, OmegaConf, open_dict

from valbench.datasets import SPLIT_KEYS, RawData, Split, Truth, arrays, prepare

from .types import Problem
from .utility import EngineUtility, SklearnUtility, Utility

CONFIG_MODULE = "valbench.conf"
GROUPS = ("dataset", "corruption", "model", "utility", "method")
BACKENDS = ("engine", "sklearn")
SKLEARN_KEYS = ("C", "max_iter", "tol")  # the logreg keys the scikit-learn reference reads


def options(group: str) -> list[str]:
    """The config names available in a group of conf/ (e.g. every method)."""
    folder = resources.files(CONFIG_MODULE).joinpath(group)
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def compose(overrides=(), return_hydra_config: bool = False) -> DictConfig:
    """The composed run config for Hydra `overrides` (e.g. ["method=loo", "dataset.n_train=200"])."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        return hydra_compose(
            "config", overrides=list(overrides), return_hydra_config=return_hydra_config
        )


def _plain(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def make_utility(
    split: Split,
    truth: Truth,
    model: dict,
    utility: dict,
    progress: bool = True,
    seed: int = 0,
) -> Utility:
    """The utility game named by the `utility` config, trained with the `model` config's model."""
    model, utility = _plain(model), _plain(utility)
    backend = utility.pop("backend", "engine")
    metric = utility.pop("name")
    device = utility.pop("device", "auto")
    if backend == "engine":
        return EngineUtility(
            split, truth, metric, model, device, seed, progress=progress, **utility
        )
    if backend == "sklearn":
        if model["name"] != "logreg":
            raise ValueError(
                f"utility backend 'sklearn' trains only model=logreg, got model={model['name']!r}"
            )
        if device not in ("auto", "cpu"):
            raise ValueError(f"utility backend 'sklearn' runs on the CPU, got device={device!r}")
        solver = {k: model[k] for k in SKLEARN_KEYS if k in model}
        return SklearnUtility(split, truth, metric, progress=progress, **utility, **solver)
    raise ValueError(f"unknown utility backend {backend!r}; available: {', '.join(BACKENDS)}")


def build_problem(cfg: DictConfig, raw: RawData | None = None) -> Problem:
    """Data, planted truth and utility game of the run described by a composed config; `raw`
    data (e.g. a user's arrays) replace the dataset loader, `cfg.dataset` then giving only the
    split sizes and `standardize`."""
    split, truth = prepare(_plain(cfg.dataset), _plain(cfg.corruption), seed=int(cfg.seed), raw=raw)
    game = make_utility(
        split,
        truth,
        cfg.model,
        cfg.utility,
        progress=bool(cfg.get("progress", True)),
        seed=int(cfg.seed),
    )
    return Problem(split, truth, model_config=_plain(cfg.model), game=game, config=_plain(cfg))


def load_problem(
    dataset: str = "digits",
    corruption: str = "mislabel",
    model: str = "logreg",
    utility: str = "val_loglik",
    seed: int = 0,
    overrides=(),
) -> Problem:
    """Build a Problem from config names, e.g. load_problem("wine", overrides=["dataset.n_train=50"])."""
    names = {"dataset": dataset, "corruption": corruption, "model": model, "utility": utility}
    for group, name in names.items():
        if name not in options(group):
            raise ValueError(f"unknown {group} {name!r}; available: {', '.join(options(group))}")
    cfg = compose([f"{g}={n}" for g, n in names.items()] + [f"seed={seed}", *overrides])
    return build_problem(cfg)


def _part(fraction: float, n: int, key: str) -> int:
    if not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"{key} must lie in (0, 1), got {key}={fraction!r}")
    return max(1, int(round(float(fraction) * n)))


def problem_from_arrays(
    x,
    y,
    *,
    mislabel: float = 0.0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.1,
    model: str = "logreg",
    utility: str = "val_loglik",
    seed: int = 0,
    overrides=(),
) -> Problem:
    """A Problem from your own data: features `x` (n, d) (numpy or a pandas DataFrame of numeric
    columns) and labels `y` (n,) of any type. A seeded stratified split keeps `val_fraction` for the
    utility's validation set and `test_fraction` for testing; features are standardised with the
    training part's statistics. `mislabel` > 0 flips that fraction of the training labels (the
    planted truth that `valbench.score` checks); 0 plants nothing. `problem.split.train_rows` maps
    each training point back to its row of `x`. `overrides` are Hydra overrides of the other groups,
    e.g. ["model.C=0.1", "corruption.mode=pair"]."""
    raw = arrays(x, y)
    n = len(raw.y)
    n_val = _part(val_fraction, n, "val_fraction")
    n_test = _part(test_fraction, n, "test_fraction")
    if not 0.0 <= float(mislabel) < 1.0:
        raise ValueError(f"mislabel must lie in [0, 1), got mislabel={mislabel!r}")
    for group, name in (("model", model), ("utility", utility)):
        if name not in options(group):
            raise ValueError(f"unknown {group} {name!r}; available: {', '.join(options(group))}")
    corruption = (
        ["corruption=mislabel", f"corruption.fraction={float(mislabel)}"]
        if mislabel
        else ["corruption=none"]
    )
    sizes = [
        f"dataset.n_train={n - n_val - n_test}",
        f"dataset.n_val={n_val}",
        f"dataset.n_test={n_test}",
    ]
    cfg = compose(
        [
            "dataset=csv",
            f"model={model}",
            f"utility={utility}",
            f"seed={seed}",
            *corruption,
            *sizes,
            *overrides,
        ]
    )
    with open_dict(cfg):  # the record names the arrays, not the csv config's file keys
        cfg.dataset = {
            "name": "arrays",
            **{k: cfg.dataset[k] for k in (*SPLIT_KEYS, "standardize")},
        }
    return build_problem(cfg, raw=raw)


def group_config(group: str, name: str) -> DictConfig:
    """conf/GROUP/NAME.yaml composed by Hydra (so its defaults list, e.g. ame_knockoff's
    `defaults: [ame]`, applies), or a ValueError listing the options that exist."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    if name not in options(group):
        raise ValueError(f"unknown {group} {name!r}; available: {', '.join(options(group))}")
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        return hydra_compose(f"{group}/{name}")[group]


def method_config(name: str) -> DictConfig:
    """conf/method/NAME.yaml composed by Hydra (see `group_config`)."""
    return group_config("method", name)


def make_method(name: str, **params):
    """Build method `name` from its config, with `params` overriding its keys."""
    from hydra.utils import instantiate

    cfg = method_config(name)
    unknown = sorted(set(params) - set(cfg) - {"_target_"})
    if unknown:
        known = sorted(k for k in cfg if k != "_target_")
        raise ValueError(f"method {name!r} has no parameter(s) {unknown}; its parameters: {known}")
    return instantiate(OmegaConf.merge(cfg, params))
