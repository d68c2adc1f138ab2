//! The Lexum Rust SDK. Placeholder until the SDK lands.
