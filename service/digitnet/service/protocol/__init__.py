"""The Open Inference Protocol without a transport: its tensors and catalog, request checks and answers, shared by gRPC and HTTP."""
