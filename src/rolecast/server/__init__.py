"""`rolecast serve`: characters as OpenAI-compatible models, with persistent sessions."""
