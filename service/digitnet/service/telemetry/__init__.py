"""What an operator watches, whatever the transport: Prometheus metrics, structured logs."""
