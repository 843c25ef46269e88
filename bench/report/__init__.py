"""valbench.report: records -> tables, figures and checks (`valbench-report`); torch-free to import.

cli        the `valbench-report` command
collect    records -> one tidy table (one row per job)
tables     summaries (method x setting) as Markdown and LaTeX
plots      paper figures; style: their matplotlib style and method colours
check      the CI regression check against a baseline
removal    removal curves (retrains, so it imports the engine when used)
sv_error   Shapley-value error against a reference sweep
agreement  agreement of attributions with the further-training gold standard
readme     README tables copied from their committed results files
"""
