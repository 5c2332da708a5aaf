"""Command-line tools built on the library: each module's `main` is the command line of
the script of the same name in scripts/ (show_batch, ablate, profile_train, demo_report).
None of them is imported by training, evaluation or export."""
