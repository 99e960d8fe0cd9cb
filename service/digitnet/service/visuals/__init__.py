"""Pictures of the network: weights read back from the ONNX file, activations drawn, the model report page."""
