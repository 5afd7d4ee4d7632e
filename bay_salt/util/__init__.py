"""Small things every part of Bay shares: the one retry policy (:mod:`.retry`)."""
