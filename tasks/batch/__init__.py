"""Batches: JSONL lines in, one job per line, results out in input order.

input.py     reading a batch file (OpenAI Batch or plain form), one Line per line
store.py     a batch as Redis holds it: record, per-line index, outcomes
service.py   Batches: submit, re-publish, snapshot, results, list
follow.py    following a batch to its end, re-queueing lines whose jobs were lost
cancel.py    cancelling a batch: waiting jobs never run
output.py    output lines in chatq's form or the OpenAI Batch API's
cache.py     answers kept for identical temperature-0 requests
claims.py    reading job claims from the producer's side
snapshot.py  a batch's counts at one moment
session.py   the batch services on this process's runtime, for any front door
"""
