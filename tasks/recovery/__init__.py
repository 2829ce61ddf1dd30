"""Recovery in the fleet: nothing waits for a follower to come back.

journal.py   what every published message carries, kept until its jobs end
outbox.py    publishing: journal first, then the message (every producer uses it)
sweeper.py   inside the workers, one at a time: send lost jobs again, mark
             finished batches done
hooks.py     the worker signals that start the heartbeat and the sweeper and mark
             messages received
"""
