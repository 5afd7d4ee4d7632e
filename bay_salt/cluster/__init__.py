"""The embedded default: a whole Bay cluster on one machine (``bay up``)."""
