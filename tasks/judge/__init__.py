"""LLM-as-judge runs: a judge run is a batch of prompts built from a template.

template.py  `{field}` templates filled from each input line
parse.py     reading a judge's answer: a score on a scale, or a pairwise verdict
stats.py     means, bootstrap and Wilson intervals, paired differences
run.py       the judge batch's source, its output rows and its summary
"""
