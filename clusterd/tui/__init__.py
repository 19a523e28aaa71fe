"""The Textual TUI (issue: The Textual TUI); talks to the daemon only through the socket."""
