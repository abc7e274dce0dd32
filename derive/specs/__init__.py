"""Built-in specs, one TOML file each."""
