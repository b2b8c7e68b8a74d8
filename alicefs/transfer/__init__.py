"""Data movement, below the mount: verified copies between any two locations, the journal
kinds, the move protocol and start-up recovery. Nothing here imports pyfuse3, so the mount,
migration and sync all use the same code (DESIGN.md §5).

- `copy`: a verified copy of one file between two backends (server-side within one store).
- `journal`: the kinds of journal entries and the journal of unfinished store uploads.
- `move`: the journaled move of one replica, step by step.
- `recovery`: what start-up does with entries a crash left open.
"""
