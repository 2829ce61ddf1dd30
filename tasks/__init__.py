"""chatq tasks and the producer side: enqueue, batches, judge scoring, the command line."""
