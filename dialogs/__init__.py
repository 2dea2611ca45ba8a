"""The conversation core: message types, dialog state, flows and the engine."""
