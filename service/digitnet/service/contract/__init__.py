"""The model-file contract: constants, errors and their statuses, the card, the ONNX model, the result types. Training imports only this layer."""
