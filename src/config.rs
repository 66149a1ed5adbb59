//! Configuration: the YAML file, CLI overrides and validation.
