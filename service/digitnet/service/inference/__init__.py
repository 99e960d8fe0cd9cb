"""The transport-free inference core: preprocessing, the classifier, micro-batching, statistics, worker processes."""
