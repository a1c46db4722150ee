"""The session protocol, with no I/O: ids, cookies, serialization, the request cycle."""
