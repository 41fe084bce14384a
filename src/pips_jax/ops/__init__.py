"""Pure array functions the model is built from: sampling, resizing, pooling, embeddings."""
