"""The server's settings: one typed model, read from flags and DIGITNET_* variables, handed whole to every layer that serves."""
