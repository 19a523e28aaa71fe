"""The clusterd daemon: the database's only writer, the scheduling loop, the socket server."""
