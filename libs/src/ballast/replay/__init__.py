"""Event replay tooling, the platform's flight recorder: read, export, import and replay what the streams recorded,
read and redrive dead letters, and run a candidate policy or SLO over a recorded window in a shadow copy.

One module per job: `selection` (what to read), `reading`, `records` (the JSONL export format), `exporting`,
`importing`, `replaying` with `pacing` and `publishing`, `tailing`, `dead_letters`, `shadow` (server-side copies into
`SHADOW_<run>`), `shadow_policy` and `shadow_slo` (the evaluations and their diffs), `shadowing` (a run end to end),
`progress` (rate, ETA and Ctrl-C). The `ballast events` command (`ballast.cli.events`) is the user's door.
"""
