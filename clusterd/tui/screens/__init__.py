"""The TUI's screens: sweeps → trials → trial detail, plus help and dialogs."""
