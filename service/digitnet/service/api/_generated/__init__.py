"""protoc output for protos/: regenerate with `./dev protos`, never edit by hand."""
