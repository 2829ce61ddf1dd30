"""chatq's benchmark suite: `python -m bench` (or `bench/run.sh`)."""
