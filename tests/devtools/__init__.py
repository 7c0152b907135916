"""Dev-only tools: real servers for tests and the demo, the demo itself, a fleet seeder. Never shipped."""
