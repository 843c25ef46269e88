"""Utilities: games that train one submodel per coalition and score it.

`Utility` owns what every backend shares: mask checks, the known evaluations by mask (store/cache.py),
the training counter,
progress, the constant predictor for coalitions with fewer than two classes, and the scores
(validation accuracy / log-likelihood, per-query target probability / margin). A backend only
implements `_predict_proba(masks, x_eval) -> (B, m, K)`. `EngineUtility` trains its submodels in
batches through bench/engine/engine.py; `SklearnUtility` is the plain per-mask scikit-learn reference that
the engine is tested against.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod

import numpy as np
from tqdm.auto import tqdm

from valbench.datasets import Split, Truth

from .engine.engine import engine_for
from .store.cache import KnownEvaluations, coalition_keys
from .store.evals import EvalStore
from .types import check_masks

METRICS = ("val_accuracy", "val_loglik", "query_prob", "query_margin", "query_accuracy")
PER_QUERY = ("query_prob", "query_margin")  # values (B, Q); the other metrics give (B,)
_EPS = 1e-12


SCORE_BLOCK = 4096  # submodels scored at a time


def score_probs(
    probs: np.ndarray,
    metric: str,
    y: np.ndarray | None = None,
    target: int | None = None,
    floor: float = 1e-6,
) -> np.ndarray:
    """Score predicted probabilities `probs` (B, m, K) of B submodels on m evaluation points.

    val_accuracy: mean_i [argmax_k p_ik = y_i];  val_loglik: mean_i log max(p_{i,y_i}, floor);
    query_prob: p_{i,target} per query (B, m);  query_margin: log p_{i,target} - max_{k != target}
    log p_ik per query (B, m), probabilities floored likewise;  query_accuracy: mean_i [argmax_k
    p_ik = target], the accuracy on the triggered queries labelled with the target (the poisoned
    test set of Lin et al. 2022, Sec. 5.3: the attack's success rate). Scored in blocks of
    SCORE_BLOCK submodels, so the temporaries stay small next to probs, each in float64.
    """
    if len(probs) > SCORE_BLOCK:
        return np.concatenate(
            [
                score_probs(probs[start : start + SCORE_BLOCK], metric, y, target, floor)
                for start in range(0, len(probs), SCORE_BLOCK)
            ]
        )
    probs = np.asarray(probs, dtype=np.float64)  # a block (the engine's are float32)
    if metric == "val_accuracy":
        return (probs.argmax(-1) == y).mean(-1)
    if metric == "val_loglik":
        p = np.take_along_axis(probs, y[None, :, None], axis=-1)[..., 0]
        return np.log(np.maximum(p, floor)).mean(-1)
    if metric == "query_prob":
        return probs[..., target]
    if metric == "query_accuracy":
        return (probs.argmax(-1) == target).mean(-1)
    if metric == "query_margin":
        logp = np.log(np.maximum(probs, floor))
        others = np.delete(logp, target, axis=-1).max(-1)
        return logp[..., target] - others
    raise ValueError(f"unknown utility {metric!r}; available: {', '.join(METRICS)}")


def class_counts(masks: np.ndarray, y: np.ndarray, n_classes: int, block: int = 4096):
    """Points of each class in each coalition (B, K), in blocks of rows: float32 products, exact
    for counts below 2^24 (one int64 copy of all the masks was 5.3 GB at 83,000 x 8,000)."""
    onehot = np.eye(n_classes, dtype=np.float32)[y]
    out = np.empty((len(masks), n_classes), dtype=np.int64)
    for start in range(0, len(masks), block):
        out[start : start + block] = masks[start : start + block].astype(np.float32) @ onehot
    return out


class Utility(ABC):
    """A Game whose value of a coalition S is the score of a model trained on S.

    Values are (B, Q) for the per-query metrics (query_prob, query_margin), else (B,). Evaluations
    are cached by mask (so nested budgets with one seed reuse trainings); `n_trainings` counts the
    trainings done (a method's Valuation.n_evals counts the evaluations it asked for).
    """

    def __init__(
        self,
        split: Split,
        truth: Truth | None = None,
        metric: str = "val_loglik",
        floor: float = 1e-6,
        progress: bool = True,
        cache: bool = True,
    ) -> None:
        if metric not in METRICS:
            raise ValueError(f"unknown utility {metric!r}; available: {', '.join(METRICS)}")
        if not 0 < floor < 1:
            raise ValueError(f"floor must lie in (0, 1), got {floor!r}")
        self.split, self.metric, self.floor = split, metric, floor
        self.n_players = split.n_train
        self.n_classes = split.n_classes
        if metric.startswith("query"):
            if truth is None or truth.n_queries == 0 or truth.target is None:
                raise ValueError(
                    f"utility {metric!r} needs triggered queries (use corruption=poison)"
                )
            self.x_eval, self.y_eval, self.target = truth.x_queries, truth.y_queries, truth.target
        else:
            self.x_eval, self.y_eval, self.target = split.x_val, split.y_val, None
        self.progress, self.cache = progress, cache
        self.known = KnownEvaluations(keep=cache)
        self.n_trainings = 0
        self.seconds = 0.0
        self.train = True  # False: answer only from the known evaluations (e.g. a store's shards)

    def persist(self, store: EvalStore, name: str, train: bool = True) -> None:
        """Keep evaluations in `store`: every file's are cached now, and after each batch this
        utility rewrites file `name` with all it has written there (earlier runs' included), so a
        killed run resumes. `train=False` answers from the store only (see `stored`)."""
        self.known.persist(store, name)
        self.train = bool(train)

    def stored(self, masks: np.ndarray) -> np.ndarray:
        """Which coalitions (B,) have an evaluation already (cached or in the store)."""
        masks = check_masks(masks, self.n_players)
        return np.array([key in self.known for key in coalition_keys(masks)], dtype=bool)

    @property
    def n_queries(self) -> int | None:
        return len(self.x_eval) if self.metric in PER_QUERY else None

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        masks = check_masks(masks, self.n_players)
        keys = coalition_keys(masks)
        todo = self.known.missing(keys)
        if todo and not self.train:
            raise ValueError(
                f"{len(todo)} of {len(keys)} coalitions have no stored evaluation and this utility "
                "does not train (evals.train=false): run the missing shards first"
            )
        fresh = {}
        if todo:
            rows = np.fromiter(todo.values(), dtype=np.int64)
            t0 = time.perf_counter()
            whole = len(rows) == len(masks) and (rows == np.arange(len(masks))).all()
            values = self.train_and_score(masks if whole else masks[rows])  # no copy of them all
            self.seconds += time.perf_counter() - t0
            self.n_trainings += len(rows)
            fresh = dict(zip(todo, values, strict=True))
            self.known.add(fresh)
        return self.known.values(keys, fresh)

    def train_and_score(self, masks: np.ndarray) -> np.ndarray:
        """Train on each mask (no cache) and score: (B,) or (B, Q)."""
        counts = class_counts(masks, self.split.y_train, self.n_classes)
        trainable = (counts > 0).sum(1) >= 2
        if trainable.all():  # the usual case: no second (B, m, K) array, no copy of the masks
            return score_probs(
                self._predict_proba(masks, self.x_eval), self.metric, self.y_eval, self.target,
                self.floor,
            )  # fmt: skip
        probs = np.empty((len(masks), len(self.x_eval), self.n_classes))
        # Fewer than two classes: the constant predictor (c_k + 1) / (|S| + K), Laplace-smoothed counts.
        const = (counts + 1) / (counts.sum(1, keepdims=True) + self.n_classes)
        probs[~trainable] = const[~trainable, None, :]
        if trainable.any():
            probs[trainable] = self._predict_proba(masks[trainable], self.x_eval)
        return score_probs(probs, self.metric, self.y_eval, self.target, self.floor)

    @abstractmethod
    def _predict_proba(self, masks: np.ndarray, x_eval: np.ndarray) -> np.ndarray:
        """Train one model per mask (each with >= 2 classes); class probabilities on `x_eval`."""

    def _bar(self, total: int, desc: str):
        return tqdm(
            total=total,
            desc=desc,
            unit="model",
            disable=not self.progress or total < 64,
            leave=False,
        )


class SklearnUtility(Utility):
    """The per-mask reference: scikit-learn's multinomial LogisticRegression, one fit per mask.

    Each fit minimises  C * sum_i m_i CE(x_i, y_i; W, b) + ||W||^2 / 2  over all K classes, with one
    BLAS thread; for K = 2 scikit-learn fits one weight vector (the binomial loss), not two. When S
    holds every class it fits on S's rows alone (the same objective, as a user's loop fits it; the
    zero-weight rows cost as much as the others, twice the time at |S| = n / 2); otherwise the mask
    enters as sample weights over all rows, so the classes absent from S keep their columns.
    """

    def __init__(
        self,
        split: Split,
        truth: Truth | None = None,
        metric: str = "val_loglik",
        C: float = 1.0,
        max_iter: int = 500,
        tol: float = 1e-4,
        **kwargs,
    ) -> None:
        super().__init__(split, truth, metric, **kwargs)
        if not C > 0:
            raise ValueError(f"C must be positive, got {C!r}")
        self.C, self.max_iter, self.tol = float(C), int(max_iter), float(tol)
        self._x = split.x_train.reshape(split.n_train, -1).astype(np.float64)

    def _predict_proba(self, masks: np.ndarray, x_eval: np.ndarray) -> np.ndarray:
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression
        from threadpoolctl import threadpool_limits

        x_eval = x_eval.reshape(len(x_eval), -1).astype(np.float64)
        out = np.zeros((len(masks), len(x_eval), self.n_classes))
        with (
            threadpool_limits(1),
            warnings.catch_warnings(),
            self._bar(len(masks), "sklearn") as bar,
        ):
            warnings.simplefilter("ignore", ConvergenceWarning)
            for b, mask in enumerate(masks):
                clf = LogisticRegression(C=self.C, max_iter=self.max_iter, tol=self.tol)
                y = self.split.y_train[mask]
                if len(np.unique(y)) == self.n_classes:  # the same objective on S's rows alone
                    clf.fit(self._x[mask], y)
                else:  # classes absent from S keep their columns: all rows, weights 0 off S
                    clf.fit(self._x, self.split.y_train, sample_weight=mask.astype(np.float64))
                out[b][:, clf.classes_] = clf.predict_proba(x_eval)
                bar.update()
        return out


class EngineUtility(Utility):
    """Submodels of any conf/model/ model, trained B at a time by the batched engine.

    `model` is the model config (`name` plus its keys); image models see `split.as_images()`.
    `device`: auto (CUDA when available), cpu or cuda[:i]; `seed` seeds every submodel's randomness.
    """

    def __init__(
        self,
        split: Split,
        truth: Truth | None = None,
        metric: str = "val_loglik",
        model: dict | None = None,
        device: str = "auto",
        seed: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(split, truth, metric, **kwargs)
        model = dict(model or {"name": "logreg"})
        self.engine = engine_for(model, split, device, seed)
        self.device = str(self.engine.device)

    def _predict_proba(self, masks: np.ndarray, x_eval: np.ndarray) -> np.ndarray:
        with self._bar(len(masks), f"engine {self.engine.name}") as bar:
            return self.engine.fit_predict(masks, x_eval, on_chunk=bar.update)
