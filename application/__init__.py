"""Use cases: one handler per command (load -> decide -> save), queries' ports, permissions."""
