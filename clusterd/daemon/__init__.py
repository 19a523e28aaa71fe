"""The clusterd daemon: the only writer of the database, the scheduling loop and the socket server."""
