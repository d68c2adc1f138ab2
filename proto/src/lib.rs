//! Generated gRPC types. Placeholder until the protos land.
