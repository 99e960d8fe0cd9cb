"""What server and client share on the wire: the code generated from protos/, the service names, TLS files."""
