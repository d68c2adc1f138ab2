//! Fault-injection tests and benchmarks for Lexum.
