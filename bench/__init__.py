"""Benchmarks: ``python -m bench`` runs every workload against Tidings and the
systems it is compared with (bench.systems, bench.peers), in one run, and
prints the figures side by side; see docs/benchmarks.md. Servers, client load
(bench.loadgen) and publishers (bench.publish) are separate processes."""
