"""The two model families, PIPs and PIPs++: encoder, correlation pyramid, refinement."""
