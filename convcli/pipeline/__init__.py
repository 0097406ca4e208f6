"""What ``convcli apply`` does, without Typer: typed options, one input through the kernel chain
(``process``), the per-file report and its NDJSON schema (``report``), batch planning (``jobs``)
and the runner with its thread pool, signals and exit code (``runner``).

The CLI parses options into these values, calls the runner and renders what comes back.
"""
