"""The PIPs network: encoder, correlation pyramid, MLP-Mixer refinement."""
