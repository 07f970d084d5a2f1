"""The Open Inference Protocol (KServe V2): tensors, REST routes and the gRPC service."""
