"""Generated gRPC code for engine.proto (committed; `make proto` regenerates it)."""
