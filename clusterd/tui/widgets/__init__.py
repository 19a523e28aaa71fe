"""Widgets of the TUI: the connection header, the virtual trials table, plots, log tail."""
