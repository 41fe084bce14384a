"""Reading original PyTorch checkpoints safely, converting and storing parameters."""
