"""The gRPC server: settings, the digitnet.v1 and Open Inference Protocol servicers, the guard, health, reload, metrics."""
