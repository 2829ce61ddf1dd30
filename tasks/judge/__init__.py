"""LLM-as-judge runs: a judge run is a batch of prompts built from a template.

template.py  `{field}` templates filled from each input line
options.py   what shapes a run: its requests (the batch id) and how answers are read
run.py       the judge batch's source: one request per line, two in pairwise mode
formats/     reading a judge's answer as each framework does (MT-Bench, Arena-Hard, ...)
rows.py      each answer (or each pair of orders) read into one output row
summary.py   the run's summary: score statistics, or win rates, strengths, the
             Arena-Hard table, position consistency and the length check
stats.py     means, bootstrap and Wilson intervals, paired differences
"""
