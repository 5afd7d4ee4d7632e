"""Measurements: containers' CPU and memory from each node's cAdvisor
(:mod:`.cadvisor`), read by the autoscaler."""
