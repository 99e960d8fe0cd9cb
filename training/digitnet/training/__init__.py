"""Offline training: load MNIST, train MLPClassifier(16, 16), export to ONNX with its card, evaluate."""
