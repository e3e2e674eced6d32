"""Tools around the daemon, run from the command line: the benchmark, the INT8 fidelity report, and a
subscriber that prints what the daemon publishes. They use the application; nothing in the daemon uses
them."""
