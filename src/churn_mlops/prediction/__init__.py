"""From request bytes to a scored, cached, recorded answer: decoding, batching, the pipeline."""
