//! The deterministic Lexum engine. Placeholder until the engine lands.
