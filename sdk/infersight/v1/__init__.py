"""Generated gRPC and protobuf code for proto/infersight/v1/ (`make proto`); do not edit."""
