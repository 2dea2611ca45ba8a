"""Business actions with typed inputs and outputs, no chat wording."""
