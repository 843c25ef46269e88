"""valbench.methods: one module per valuation-method family, each usable from plain Python.

Methods are built like scikit-learn estimators (``__init__`` stores parameters) and expose
``value(game, *, seed, problem=None) -> Valuation``. Configs in conf/method/ name them by ``_target_``.
"""
