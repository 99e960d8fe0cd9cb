"""The server: one process (or workers) that loads the model, builds the data plane and runs both transports over it."""
