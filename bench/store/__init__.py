"""valbench.store: what a run leaves on disk.

records   the job record (result.json, schema 1) and its arrays; atomic writes
evals     the evaluation store: U(S) per mask, keyed by the problem's fingerprint
cache     the evaluations a game already knows (its own and a store's), by mask
shards    train the evaluations of a sweep in shards that share one store
"""
