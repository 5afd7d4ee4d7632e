"""What tests and benchmarks share and the product does not ship: real
daemons on this machine, and in-memory stand-ins named as such."""
