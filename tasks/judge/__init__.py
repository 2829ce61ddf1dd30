"""LLM-as-judge runs: a judge run is a batch of prompts built from a template.

template.py  `{field}` templates filled from each input line
formats/     reading a judge's answer as each framework does (MT-Bench, Arena-Hard, ...)
stats.py     means, bootstrap and Wilson intervals, paired differences
run.py       the judge batch's source, its output rows and its summary
"""
