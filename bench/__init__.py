"""Benchmarks: each workload runs against Tidings and, in the same run, the
baseline it is compared with; figures are printed side by side and written to
a JSON file. Client load runs in separate processes from the server under test."""
