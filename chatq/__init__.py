"""chatq's ground floor: the error tree every package raises, and the redaction that
keeps secrets out of every message. It imports nothing else of chatq."""
