"""The HTTP front door: the Open Inference Protocol over REST, curl-friendly classify and explain, metrics."""
