"""The generated parts of README.md and docs/: `make docs` (scripts/make_docs.py).

A page holds generated blocks between two markers,

    <!-- begin generated: NAME -->
    ...written by `make docs`; edits here are overwritten...
    <!-- end generated: NAME -->

and `research.docs.generate.BLOCKS` maps each NAME to the function that writes it:
tables of measured numbers, read from SAVED artifacts only (nothing is measured), each
with one provenance line (research/provenance.py), and the config and command-line
references, read from the `Config` dataclass and the argument parsers. Any page of
README.md and docs/*.md may use any block; a page without markers is left alone.
"""
