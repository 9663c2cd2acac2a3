"""Domain and run configuration: YAML and Markdown decoded into validated msgspec Structs."""
